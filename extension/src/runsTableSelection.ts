/**
 * Which runs are selected in the runs table: kept by run id, so a selection survives sorting,
 * grouping, folding and polled updates (the grid's own selection model is by cell position).
 * Click replaces, ctrl/cmd-click or the checkbox toggles, shift-click selects the range from the
 * last clicked run.
 */
import { IView, RunsStore } from './runsTableData';

export type ClickMode = 'only' | 'toggle' | 'range';

export class RunSelection {
  constructor(private store: RunsStore) {}

  private ids = new Set<string>();
  private anchor: string | null = null;

  get size(): number {
    return this.ids.size;
  }

  /** Whether the run in store row `row` is selected. */
  hasRow(row: number): boolean {
    return this.ids.has(this.store.runIds[row]);
  }

  /** Apply a click on view row `viewRow` (a run's row, not a group header). */
  click(view: IView, viewRow: number, mode: ClickMode): void {
    const row = view.rows[viewRow];
    const id = this.store.runIds[row];
    if (row < 0 || id === undefined) {
      return;
    }
    const anchorRow = this.anchor !== null ? view.rows.indexOf(this.store.row(this.anchor)) : -1;
    if (mode === 'range' && anchorRow >= 0) {
      this.ids.clear();
      const [from, to] = anchorRow < viewRow ? [anchorRow, viewRow] : [viewRow, anchorRow];
      for (let i = from; i <= to; i++) {
        if (view.rows[i] >= 0) {
          this.ids.add(this.store.runIds[view.rows[i]]);
        }
      }
      return;
    }
    if (mode === 'toggle') {
      if (!this.ids.delete(id)) {
        this.ids.add(id);
      }
    } else {
      this.ids = new Set([id]);
    }
    this.anchor = id;
  }

  /** Every run the view shows (folded groups' runs are left out). */
  selectAll(view: IView): void {
    this.ids = new Set(Array.from(view.rows).filter(row => row >= 0).map(row => this.store.runIds[row]));
  }

  clear(): void {
    this.ids.clear();
  }

  /** Forget runs the store no longer holds (a reload with another filter). */
  prune(): void {
    for (const id of this.ids) {
      if (!this.store.has(id)) {
        this.ids.delete(id);
      }
    }
  }

  /**
   * Selected run ids in the order the view shows them, keeping those `keep` accepts (by store
   * row); selected runs folded away in a group come last.
   */
  inOrder(view: IView, keep: (row: number) => boolean = () => true): string[] {
    const ids: string[] = [];
    const seen = new Set<string>();
    for (const row of view.rows) {
      const id = row >= 0 ? this.store.runIds[row] : undefined;
      if (id !== undefined && this.ids.has(id)) {
        seen.add(id);
        if (keep(row)) {
          ids.push(id);
        }
      }
    }
    if (seen.size < this.ids.size) {
      for (const id of this.ids) {
        const row = this.store.row(id);
        if (!seen.has(id) && row >= 0 && keep(row)) {
          ids.push(id);
        }
      }
    }
    return ids;
  }
}
