/**
 * The Runs tab: every run of the workspace in one sortable, filterable, groupable table in the
 * main area, in the spirit of MLflow's and W&B's run tables, built for 10,000+ runs.
 *
 * Loading: the newest runs come first (one small request, so rows show at once), then the whole
 * table in the compact column-by-column form of `GET runs?format=columns`. Sorting and grouping
 * then happen in the browser. While the tab is visible it polls only what can change: runs
 * still queued or running, and runs created since the newest one shown.
 */
import { MainAreaWidget } from '@jupyterlab/apputils';
import { MessageLoop } from '@lumino/messaging';
import { PanelLayout, Widget } from '@lumino/widgets';

import { WorkbenchAPIError, errorText, requestAPI } from './api';
import { preloadPlotly } from './compare';
import { workbenchIcon } from './icons';
import { RunsGrid, IGridHost } from './runsGrid';
import { cancelRun, forEachRun, rerunRun } from './runsTableActions';
import {
  ACTIVE,
  ColumnKind,
  GroupBy,
  IColumnarRuns,
  IColumnSpec,
  IView,
  RunsStore,
  buildView,
  shortId
} from './runsTableData';
import { ClickMode, RunSelection } from './runsTableSelection';
import { RunsTableToolbar } from './runsTableToolbar';

/** Rows of the first, quick request. */
const FIRST_PAGE = 200;
/** Most runs the table holds; past it, a filter narrows what is loaded. */
const MAX_ROWS = 100_000;
/** Poll period while runs are queued or running, and otherwise (for runs started elsewhere). */
const POLL_ACTIVE_MS = 3000;
const POLL_IDLE_MS = 10_000;
/** Past this many active runs, a poll reloads the table instead of naming them all in a filter. */
const MAX_POLLED_IDS = 200;
const FINAL = new Set(['finished', 'failed', 'killed']);

/** What the table asks of the rest of the extension. */
export interface IRunsTableActions {
  openNotebook(runId: string): void;
  compare(runIds: string[], metric: string | null): void;
  /** The sidebar's promote flow (dialog with the gates' verdicts); absent: no Register button. */
  promote?: (runId: string) => Promise<void>;
}

/** Open tables, re-coloured when the theme changes. */
const liveTables = new Set<RunsTable>();

/** Give every open runs table the current theme's colours (call after a theme change). */
export function restyleRunsTables(): void {
  liveTables.forEach(table => table.grid.restyle());
}

export class RunsTable extends Widget implements IGridHost {
  constructor(private actions: IRunsTableActions) {
    super();
    this.id = 'workbench-runs-table';
    this.addClass('wb-RunsTable');
    this.toolbar = new RunsTableToolbar({
      applyFilter: text => {
        this.filter = text;
        void this.load();
      },
      setGroupBy: groupBy => {
        this.groupBy = groupBy;
        this.collapsed.clear();
        this.rebuild();
      },
      setColumnShown: (key, shown) => {
        this.shownOverride.set(key, shown);
        this.rebuild();
      },
      refresh: () => void this.load(),
      compare: () => this.compareSelected(),
      openNotebook: () => this.selectedRuns(this.canOpen).slice(0, 5).forEach(id => this.actions.openNotebook(id)),
      promote: () => void this.promoteSelected(),
      rerun: () =>
        void this.act('rerun', this.canRerun, async id => {
          const { runId, warnings } = await rerunRun(id);
          const note = warnings.length ? ` Note: ${warnings.join(' ')}` : '';
          return `Rerun of ${shortId(id)} started as ${shortId(runId)}.${note}`;
        }),
      cancel: () => void this.act('cancel', row => ACTIVE.has(this.store.value('status', row)), async id =>
        (await cancelRun(id)) ? `Cancelling ${shortId(id)}.` : `${shortId(id)} had already ended.`)
    });
    this.toolbar.promoteButton.hidden = !actions.promote;
    const layout = new PanelLayout();
    this.layout = layout;
    const bar = new Widget({ node: this.toolbar.node });
    layout.addWidget(bar);
    this.grid = new RunsGrid(this);
    layout.addWidget(this.grid);
    // The grid measures itself on resize messages: send one whenever its box changes (the tab is
    // resized, the toolbar grows a message line).
    this.resizeObserver = new ResizeObserver(() =>
      MessageLoop.sendMessage(this.grid, Widget.ResizeMessage.UnknownSize)
    );
    this.resizeObserver.observe(this.grid.node);
    this.updateSelection();
    liveTables.add(this);
    (this.node as any).wbRunsTable = this; // read by the browser tests (colours, view, cell positions)
  }

  readonly grid: RunsGrid;
  readonly store = new RunsStore();
  view: IView = { rows: new Int32Array(0), groups: [] };
  columns: IColumnSpec[] = [];
  sortKey = 'start';
  private sortKind: ColumnKind = 'time';
  descending = true;
  private groupBy: GroupBy = 'none';
  private collapsed = new Set<string>();
  private selected = new RunSelection(this.store);
  private filter = '';
  /** The last filter the server accepted: what polls use while the box shows a refused one. */
  private goodFilter = '';
  private shownOverride = new Map<string, boolean>();
  private widths = new Map<string, number>();
  private toolbar: RunsTableToolbar;
  private resizeObserver: ResizeObserver;
  private loadToken = 0;
  private loading = false;
  private timer: number | null = null;
  /** performance.now() at the steps of the last load (the browser tests report them). */
  readonly timings: Record<string, number> = {};
  /** When the whole table (not only the first page) was last loaded: performance.now(). */
  loadedAt = 0;

  dispose(): void {
    if (this.isDisposed) {
      return;
    }
    liveTables.delete(this);
    this.stopPolling();
    this.resizeObserver.disconnect();
    this.toolbar.dispose();
    super.dispose();
  }

  /** First shown (attached) or shown again: load once, then poll while visible. */
  protected onAfterAttach(): void {
    this.onAfterShow();
  }

  protected onAfterShow(): void {
    if (!this.loadedAt && !this.loading) {
      void this.load();
    }
    this.schedulePoll();
  }

  protected onAfterHide(): void {
    this.stopPolling();
  }

  protected onActivateRequest(): void {
    this.grid.node.focus({ preventScroll: true });
  }

  // ------------------------------------------------------------------------------------------
  // Loading

  private fetch(limit: number, filter: string): Promise<IColumnarRuns> {
    return requestAPI<IColumnarRuns>('runs', {}, { format: 'columns', limit: String(limit), filter });
  }

  /** Load the table again from the server: the newest runs first, then all of them. */
  async load(): Promise<void> {
    const token = ++this.loadToken;
    const mark = (name: string) => (this.timings[name] = performance.now());
    mark('load');
    this.loading = true;
    this.node.dataset.state = 'loading';
    this.toolbar.count.textContent = 'Loading…';
    try {
      const first = await this.fetch(FIRST_PAGE, this.filter);
      if (token !== this.loadToken) {
        return;
      }
      mark('firstAnswer');
      this.goodFilter = this.filter;
      this.toolbar.showFilterError(null);
      this.store.reset(first);
      this.rebuild();
      mark('firstShown');
      requestAnimationFrame(() => mark('firstPainted'));
      if (first.rows >= FIRST_PAGE) {
        this.node.dataset.state = 'partial';
        this.toolbar.count.textContent = `${first.rows.toLocaleString()} newest runs · loading all…`;
        const all = await this.fetch(MAX_ROWS, this.filter);
        if (token !== this.loadToken) {
          return;
        }
        mark('allAnswer');
        this.store.reset(all);
        this.rebuild();
        mark('allShown');
      }
      this.loadedAt = performance.now();
      this.node.dataset.state = 'complete';
    } catch (error) {
      if (token !== this.loadToken) {
        return;
      }
      this.node.dataset.state = 'error';
      if (error instanceof WorkbenchAPIError && error.isRefusal && this.filter) {
        const hint = error.hint && !error.message.includes(error.hint) ? ` ${error.hint}` : '';
        this.toolbar.showFilterError(error.message + hint);
        this.filter = this.goodFilter;
        this.updateCount();
        this.toolbar.count.textContent += this.filter ? ' (the last valid filter)' : ' (no filter)';
      } else {
        this.toolbar.showMessage(`Cannot load the runs: ${errorText(error)}`, 'error');
        this.updateCount();
      }
    } finally {
      if (token === this.loadToken) {
        this.loading = false;
        this.schedulePoll();
      }
    }
  }

  private stopPolling(): void {
    if (this.timer !== null) {
      window.clearTimeout(this.timer);
      this.timer = null;
    }
  }

  private schedulePoll(): void {
    this.stopPolling();
    if (!this.isVisible || this.isDisposed) {
      return;
    }
    const delay = this.store.activeRuns().length ? POLL_ACTIVE_MS : POLL_IDLE_MS;
    this.timer = window.setTimeout(() => void this.poll(), delay);
  }

  /** Fetch only what can have changed: active runs and runs newer than the newest shown. */
  private async poll(): Promise<void> {
    this.timer = null;
    if (this.loading || !this.isVisible) {
      this.schedulePoll();
      return;
    }
    const active = this.store.activeRuns();
    if (active.length > MAX_POLLED_IDS) {
      return this.load();
    }
    const changed = this.store.changedFilter();
    const token = this.loadToken;
    try {
      const answer = await this.fetch(MAX_ROWS, this.filter ? `(${this.filter}) and (${changed})` : changed);
      if (token === this.loadToken && answer.rows) {
        const before = this.store.rowCount;
        this.store.merge(answer);
        if (this.store.rowCount !== before || active.length) {
          this.rebuild(); // new runs, or active runs that moved on
        }
      }
    } catch {
      // a failed poll is retried at the next one; a Refresh shows the error
    }
    this.schedulePoll();
  }

  // ------------------------------------------------------------------------------------------
  // View

  private isShown = (column: IColumnSpec): boolean => this.shownOverride.get(column.key) ?? !column.hidden;

  /** Re-derive columns and rows from the store and the user's choices, and repaint. */
  private rebuild(): void {
    const specs = this.store.columnSpecs();
    this.columns = specs.filter(this.isShown);
    this.view = buildView(this.store, {
      sortKey: this.sortKey,
      sortKind: this.sortKind,
      descending: this.descending,
      groupBy: this.groupBy,
      collapsed: this.collapsed
    });
    this.selected.prune();
    this.grid.reload(this.widths);
    this.toolbar.setColumns(specs, this.isShown);
    this.node.dataset.rows = String(this.view.rows.length);
    this.updateCount();
    this.updateSelection();
  }

  private updateCount(): void {
    const total = this.store.rowCount;
    const active = this.store.activeRuns().length;
    let text = `${total.toLocaleString()} run${total === 1 ? '' : 's'}`;
    if (total >= MAX_ROWS) {
      text += ` (the newest ${MAX_ROWS.toLocaleString()}: filter to see others)`;
    }
    if (active) {
      text += ` · ${active} active`;
    }
    if (!total) {
      text = this.filter ? 'No runs match the filter' : 'No runs yet: use "Run as experiment" on a notebook';
    }
    this.toolbar.count.textContent = text;
  }

  sortBy(key: string, kind: ColumnKind): void {
    if (this.sortKey === key) {
      this.descending = !this.descending;
    } else {
      this.sortKey = key;
      this.sortKind = kind;
      this.descending = kind === 'number' || kind === 'time' || kind === 'duration'; // biggest, newest first
    }
    this.rebuild();
  }

  toggleGroup(viewRow: number): void {
    const group = this.view.groups[-this.view.rows[viewRow] - 1];
    if (group) {
      if (!this.collapsed.delete(group.key)) {
        this.collapsed.add(group.key);
      }
      this.rebuild();
    }
  }

  // ------------------------------------------------------------------------------------------
  // Selection

  isSelected(row: number): boolean {
    return this.selected.hasRow(row);
  }

  clickRow(viewRow: number, mode: ClickMode): void {
    this.selected.click(this.view, viewRow, mode);
    if (this.selected.size) {
      preloadPlotly(); // the Compare view needs it: fetch it while the user picks runs
    }
    this.selectionChanged();
  }

  /** Ctrl/Cmd+A, Escape and Ctrl/Cmd+C in the grid. */
  keyCommand(command: 'select-all' | 'clear' | 'copy'): void {
    if (command === 'copy') {
      void this.copyIds();
      return;
    }
    if (command === 'select-all') {
      this.selected.selectAll(this.view);
    } else {
      this.selected.clear();
    }
    this.selectionChanged();
  }

  private selectionChanged(): void {
    this.updateSelection();
    this.grid.repaint();
  }

  openRow(viewRow: number): void {
    const row = this.view.rows[viewRow];
    if (row >= 0) {
      this.actions.openNotebook(this.store.runIds[row]);
    }
  }

  private selectedRuns(keep?: (row: number) => boolean): string[] {
    return this.selected.inOrder(this.view, keep);
  }

  private canOpen = (row: number): boolean =>
    FINAL.has(this.store.value('status', row)) && !!this.store.value('notebook', row);
  private canRerun = (row: number): boolean =>
    !!this.store.value('notebook', row) && !ACTIVE.has(this.store.value('status', row));

  private updateSelection(): void {
    this.toolbar.updateActions(this.selected.size, {
      openable: this.selectedRuns(this.canOpen).length,
      promotable: this.selectedRuns(row => this.store.value('status', row) === 'finished').length,
      rerunnable: this.selectedRuns(this.canRerun).length,
      active: this.selectedRuns(row => ACTIVE.has(this.store.value('status', row))).length
    });
    this.node.dataset.selected = String(this.selected.size);
  }

  /** Where a cell is on the page (see `RunsGrid.cellPoint`); `key`: a column key, `'run'` or `'check'`. */
  cellPoint(viewRow: number, key: string): { x: number; y: number } {
    const column = key === 'check' || key === 'run' ? key : this.columns.findIndex(c => c.key === key);
    return this.grid.cellPoint(viewRow, column);
  }

  /** Selected run ids for the context menu's commands. */
  get selection(): string[] {
    return this.selectedRuns();
  }

  /** Put the selected runs' full ids on the clipboard, one a line. */
  async copyIds(): Promise<void> {
    const ids = this.selectedRuns();
    if (!ids.length) {
      return;
    }
    try {
      await navigator.clipboard.writeText(ids.join('\n'));
      this.toolbar.showMessage(`Copied ${ids.length === 1 ? ids[0] : `${ids.length} run ids`}.`);
    } catch (error) {
      this.toolbar.showMessage(`Cannot copy to the clipboard: ${errorText(error)}`, 'error');
    }
  }

  // ------------------------------------------------------------------------------------------
  // Actions

  compareSelected(): void {
    const ids = this.selectedRuns();
    if (ids.length) {
      const metric = this.sortKey.startsWith('metrics.') ? this.sortKey.slice('metrics.'.length) : null;
      this.actions.compare(ids, metric);
    }
  }

  /** The toolbar button behind a context-menu action (same enabled state, same effect). */
  private actionButton(action: string): HTMLButtonElement | null {
    const bar = this.toolbar;
    const buttons: Record<string, HTMLButtonElement> = {
      open: bar.openButton,
      compare: bar.compareButton,
      promote: bar.promoteButton,
      rerun: bar.rerunButton,
      cancel: bar.cancelButton
    };
    return buttons[action] ?? null;
  }

  canDo(action: string): boolean {
    if (action === 'copy') {
      return this.selected.size > 0;
    }
    const button = this.actionButton(action);
    return !!button && !button.disabled && !button.hidden;
  }

  doAction(action: string): void {
    if (action === 'copy') {
      void this.copyIds();
    } else if (this.canDo(action)) {
      this.actionButton(action)!.click();
    }
  }

  async promoteSelected(): Promise<void> {
    const [id] = this.selectedRuns(row => this.store.value('status', row) === 'finished');
    if (!id || !this.actions.promote) {
      return;
    }
    try {
      await this.actions.promote(id);
    } catch (error) {
      this.toolbar.showMessage(`Cannot register run ${shortId(id)}: ${errorText(error)}`, 'error');
    }
  }

  /** Rerun or cancel the selected runs `keep` accepts; the outcome goes on the message line. */
  async act(
    verb: 'rerun' | 'cancel',
    keep: (row: number) => boolean,
    work: (id: string) => Promise<string>
  ): Promise<void> {
    const ids = this.selectedRuns(keep);
    if (!ids.length) {
      return;
    }
    const what = ids.length === 1 ? shortId(ids[0]) : `${ids.length} runs`;
    this.toolbar.showMessage(`${verb === 'rerun' ? 'Starting' : 'Cancelling'} ${what}…`);
    const outcome = await forEachRun(ids, work, verb);
    this.toolbar.showMessage(outcome.text, outcome.failed ? 'error' : 'info');
    await this.poll();
  }
}

/** The Runs tab: the table in a main-area widget. */
export function createRunsTableWidget(actions: IRunsTableActions): MainAreaWidget<RunsTable> {
  const content = new RunsTable(actions);
  const widget = new MainAreaWidget({ content });
  widget.id = 'workbench-runs-table-tab';
  widget.title.label = 'Runs';
  widget.title.caption = 'Workbench runs: sort, filter, group, compare';
  widget.title.icon = workbenchIcon;
  widget.title.closable = true;
  widget.addClass('wb-RunsTable-tab');
  return widget;
}
