/**
 * The runs table's controls, above the grid: the filter box (Workbench's filter language, the
 * server's refusal shown right under it), grouping, the column chooser, refresh, the actions on
 * the selected runs, and one message line where an action's outcome or error is shown, next to
 * the buttons the user pressed rather than only in the notification centre.
 */
import { el } from './dom';
import { IColumnSpec, GroupBy, SECTION_LABELS, ColumnSection } from './runsTableData';

/** What the toolbar's controls do: the table implements these. */
export interface IToolbarActions {
  applyFilter(text: string): void;
  setGroupBy(groupBy: GroupBy): void;
  setColumnShown(key: string, shown: boolean): void;
  refresh(): void;
  compare(): void;
  openNotebook(): void;
  promote(): void;
  rerun(): void;
  cancel(): void;
}

function button(label: string, title: string, className: string, onClick: () => void): HTMLButtonElement {
  const node = el('button', `wb-RunsTable-button ${className}`, label);
  node.type = 'button';
  node.title = title;
  node.onclick = event => {
    event.stopPropagation();
    onClick();
  };
  return node;
}

export class RunsTableToolbar {
  constructor(private actions: IToolbarActions) {
    this.node = el('div', 'wb-RunsTable-toolbar');
    this.filter = el('input', 'wb-RunsTable-filter jp-mod-styled');
    this.filter.type = 'search';
    this.filter.placeholder = "Filter: metrics.accuracy > 0.9 and params.lr = 0.1 (Enter)";
    this.filter.title =
      'Workbench filter language, as in `workbench runs list --filter`: params.<k>, metrics.<k>, tags.<k>, ' +
      'status, experiment, run_id, duration, created_at; = != < <= > >= like in; and / or / not. Enter applies.';
    this.filter.spellcheck = false;
    this.filter.onkeydown = event => {
      if (event.key === 'Enter') {
        this.actions.applyFilter(this.filter.value.trim());
      } else if (event.key === 'Escape' && this.filter.value) {
        this.filter.value = '';
        this.actions.applyFilter('');
      }
    };
    this.filter.addEventListener('search', () => {
      if (!this.filter.value) {
        this.actions.applyFilter(''); // the search field's clear button
      }
    });
    this.filterError = el('div', 'wb-RunsTable-filterError');
    this.filterError.hidden = true;
    this.filterError.setAttribute('role', 'alert');

    this.groupBy = el('select', 'wb-RunsTable-group jp-mod-styled');
    this.groupBy.title = 'Group the runs by experiment or by sweep';
    const groupings = [
      ['none', 'No grouping'],
      ['experiment', 'Group: experiment'],
      ['sweep_id', 'Group: sweep']
    ];
    for (const [value, label] of groupings) {
      const option = el('option', '', label);
      option.value = value;
      this.groupBy.appendChild(option);
    }
    this.groupBy.onchange = () => this.actions.setGroupBy(this.groupBy.value as GroupBy);

    this.columnsButton = button('Columns', 'Show or hide columns', 'wb-RunsTable-columnsButton', () =>
      this.toggleChooser()
    );
    this.chooser = el('div', 'wb-RunsTable-chooser');
    this.chooser.hidden = true;
    const refresh = button('↻', 'Reload the runs', 'wb-RunsTable-refresh', () => this.actions.refresh());
    this.count = el('span', 'wb-RunsTable-count');

    const selection = el('div', 'wb-RunsTable-actions');
    const a = this.actions;
    this.compareButton = button(
      'Compare',
      'Compare the selected runs (the sorted metric first)',
      'wb-RunsTable-compare wb-mod-primary',
      () => a.compare()
    );
    this.openButton = button(
      'Open notebook',
      'Open the executed notebook of the selected run',
      'wb-RunsTable-open',
      () => a.openNotebook()
    );
    this.promoteButton = button(
      'Register…',
      'Register the selected run\'s model and point "production" at it (its gates are checked first)',
      'wb-RunsTable-promote',
      () => a.promote()
    );
    this.rerunButton = button(
      'Rerun',
      'Start the selected runs again: same notebook, parameters and experiment',
      'wb-RunsTable-rerun',
      () => a.rerun()
    );
    this.cancelButton = button(
      'Cancel run',
      'Stop the selected queued or running runs',
      'wb-RunsTable-cancel',
      () => a.cancel()
    );
    selection.append(this.compareButton, this.openButton, this.promoteButton, this.rerunButton, this.cancelButton);

    // Two rows of fixed content, so nothing jumps around as texts change: what to show (filter,
    // grouping, columns), then how many runs and what to do with the selected ones. The filter's
    // error goes between them, right under the box; an action's outcome, under the buttons.
    const view = el('div', 'wb-RunsTable-row');
    view.append(this.filter, this.groupBy, this.columnsButton, refresh);
    const act = el('div', 'wb-RunsTable-row');
    act.append(this.count, selection);
    this.message = el('div', 'wb-RunsTable-message');
    this.message.hidden = true;
    this.node.append(view, this.filterError, act, this.chooser, this.message);
    document.addEventListener('mousedown', this.closeChooserOutside, true);
  }

  readonly node: HTMLElement;
  readonly filter: HTMLInputElement;
  readonly filterError: HTMLElement;
  readonly groupBy: HTMLSelectElement;
  readonly columnsButton: HTMLButtonElement;
  readonly chooser: HTMLElement;
  readonly count: HTMLElement;
  readonly message: HTMLElement;
  readonly compareButton: HTMLButtonElement;
  readonly openButton: HTMLButtonElement;
  readonly promoteButton: HTMLButtonElement;
  readonly rerunButton: HTMLButtonElement;
  readonly cancelButton: HTMLButtonElement;
  private columns: IColumnSpec[] = [];
  private isShown: (column: IColumnSpec) => boolean = () => true;

  dispose(): void {
    document.removeEventListener('mousedown', this.closeChooserOutside, true);
  }

  /** The server's refusal of the filter, under the box; null clears it. */
  showFilterError(text: string | null): void {
    this.filterError.textContent = text ?? '';
    this.filterError.hidden = !text;
    this.filter.classList.toggle('wb-mod-invalid', !!text);
  }

  /** An action's outcome on the message line; errors stay until the next action or dismissal. */
  showMessage(text: string | null, kind: 'error' | 'info' = 'info'): void {
    this.message.textContent = '';
    this.message.hidden = !text;
    if (!text) {
      return;
    }
    this.message.className = `wb-RunsTable-message wb-mod-${kind}`;
    this.message.setAttribute('role', kind === 'error' ? 'alert' : 'status');
    const close = button('×', 'Dismiss', 'wb-RunsTable-dismiss', () => this.showMessage(null));
    this.message.append(el('span', 'wb-RunsTable-messageText', text), close);
  }

  /** Enable the actions that apply to the selection (`counts` by what the selected runs can do). */
  updateActions(
    selected: number,
    counts: { openable: number; promotable: number; rerunnable: number; active: number }
  ): void {
    this.compareButton.textContent = selected ? `Compare (${selected})` : 'Compare';
    this.compareButton.disabled = selected < 1;
    this.openButton.disabled = counts.openable < 1;
    this.promoteButton.disabled = selected !== 1 || counts.promotable !== 1;
    this.rerunButton.disabled = counts.rerunnable < 1;
    this.cancelButton.disabled = counts.active < 1;
    this.cancelButton.textContent = counts.active > 1 ? `Cancel (${counts.active})` : 'Cancel run';
  }

  /** The columns the chooser lists, and which are shown. */
  setColumns(columns: IColumnSpec[], isShown: (column: IColumnSpec) => boolean): void {
    this.columns = columns;
    this.isShown = isShown;
    if (!this.chooser.hidden) {
      this.renderChooser();
    }
  }

  private toggleChooser(): void {
    this.chooser.hidden = !this.chooser.hidden;
    this.columnsButton.classList.toggle('wb-mod-active', !this.chooser.hidden);
    if (!this.chooser.hidden) {
      this.renderChooser();
      this.chooser.querySelector<HTMLInputElement>('.wb-RunsTable-chooserSearch')?.focus();
    }
  }

  private closeChooserOutside = (event: MouseEvent): void => {
    const target = event.target as Node;
    if (!this.chooser.hidden && !this.chooser.contains(target) && !this.columnsButton.contains(target)) {
      this.toggleChooser();
    }
  };

  /** One checkbox per column, by section, with a search box for wide tables. */
  private renderChooser(): void {
    const search = this.chooser.querySelector<HTMLInputElement>('.wb-RunsTable-chooserSearch');
    const query = search?.value.trim().toLowerCase() ?? '';
    this.chooser.textContent = '';
    const input = el('input', 'wb-RunsTable-chooserSearch jp-mod-styled');
    input.placeholder = 'Find a column';
    input.value = query;
    input.oninput = () => {
      this.renderChooser();
      const again = this.chooser.querySelector<HTMLInputElement>('.wb-RunsTable-chooserSearch');
      again?.focus();
      again?.setSelectionRange(again.value.length, again.value.length);
    };
    this.chooser.appendChild(input);
    const list = el('div', 'wb-RunsTable-chooserList');
    for (const section of Object.keys(SECTION_LABELS) as ColumnSection[]) {
      const columns = this.columns.filter(
        c => c.section === section && (!query || c.key.toLowerCase().includes(query))
      );
      if (!columns.length) {
        continue;
      }
      const header = el('div', 'wb-RunsTable-chooserSection');
      header.appendChild(el('span', '', SECTION_LABELS[section]));
      const all = columns.every(c => this.isShown(c));
      header.appendChild(
        button(all ? 'hide all' : 'show all', '', 'wb-RunsTable-chooserAll', () => {
          columns.forEach(c => this.actions.setColumnShown(c.key, !all));
        })
      );
      list.appendChild(header);
      for (const column of columns) {
        const label = el('label', 'wb-RunsTable-chooserItem');
        label.dataset.key = column.key;
        const box = el('input');
        box.type = 'checkbox';
        box.checked = this.isShown(column);
        box.onchange = () => this.actions.setColumnShown(column.key, box.checked);
        label.append(box, el('span', '', column.section === 'run' ? column.label : column.key));
        list.appendChild(label);
      }
    }
    this.chooser.appendChild(list);
  }
}
