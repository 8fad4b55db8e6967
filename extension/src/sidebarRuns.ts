/**
 * The sidebar's Runs section: the most recent runs, live, one line each —
 * `☐ finished 1a2b3c4d  wine-sweep  accuracy 0.973` — with the whole record in the row's tooltip.
 * The full, sortable table lives in the main area ("All runs…").
 *
 * The list only re-renders when the polled answer changed, so checkboxes and clicks are never
 * lost under a user's cursor.
 */
import { Notification } from '@jupyterlab/apputils';
import { caretDownIcon } from '@jupyterlab/ui-components';

import { IRunRow, errorText, notifyError, postAPI, requestAPI } from './api';
import { preloadPlotly } from './compare';
import { el } from './dom';
import { formatMetric, formatValue } from './format';
import { FINAL, PRODUCTION, SidebarSection, button, showError } from './sidebarSection';

/** The most recent runs the sidebar lists; the main-area runs table has them all. */
export const RUNS_LIMIT = 50;
/** Headline metrics, preferred in this order when several are logged by equally many runs. */
const PREFERRED_METRICS = ['accuracy', 'f1', 'auc', 'roc_auc', 'r2', 'precision', 'recall', 'rmse', 'mae', 'mse', 'loss'];

export interface IRunsActions {
  openNotebook(runId: string): void;
  compare(runIds: string[], metric: string | null): void;
  openRunsTable?: () => void;
  /** "Register run…": promote the run's model (the Models section refreshes). */
  promote(runId: string): Promise<void>;
}

interface IExperiment {
  name: string;
  runs: number;
}

/** Where a metric stands among the headline ones: `val_accuracy` and `top1_accuracy_test` as `accuracy`. */
function preference(metric: string): number {
  const name = metric.toLowerCase();
  const words = name.split(/[^a-z0-9]+/);
  const index = PREFERRED_METRICS.findIndex(p => name === p || words.includes(p));
  return index < 0 ? PREFERRED_METRICS.length : index;
}

/**
 * Each experiment's key metric (`metrics.<name>` column): the metric most of its runs logged;
 * among equals a headline metric (accuracy, f1, … loss), then the first logged.
 */
export function keyMetrics(rows: IRunRow[]): Map<string, string> {
  const counts = new Map<string, Map<string, number>>();
  for (const row of rows) {
    const perExperiment = counts.get(row.experiment) ?? new Map<string, number>();
    counts.set(row.experiment, perExperiment);
    for (const [key, value] of Object.entries(row)) {
      if (key.startsWith('metrics.') && value !== null && value !== undefined) {
        perExperiment.set(key, (perExperiment.get(key) ?? 0) + 1);
      }
    }
  }
  const chosen = new Map<string, string>();
  for (const [experiment, perExperiment] of counts) {
    const ranked = [...perExperiment.entries()].sort(
      (a, b) => b[1] - a[1] || preference(a[0].slice(8)) - preference(b[0].slice(8))
    );
    if (ranked.length) {
      chosen.set(experiment, ranked[0][0]);
    }
  }
  return chosen;
}

/** A param as it was given (`0.1`, not the tables' `0.1000`). */
function asGiven(value: any): string {
  return typeof value === 'number' ? String(value) : formatValue(value);
}

/** `run_id · status`, then experiment, notebook, params and metrics: the row's tooltip. */
function runTooltip(run: IRunRow): string {
  const group = (prefix: string) =>
    Object.entries(run)
      .filter(([key, value]) => key.startsWith(prefix) && value !== null && value !== undefined)
      .map(([key, value]) => `${key.slice(prefix.length)}=${prefix === 'metrics.' ? formatMetric(value) : asGiven(value)}`)
      .join(', ');
  const lines = [
    `${run.run_id} · ${run.status}`,
    `experiment: ${run.experiment}`,
    run.notebook ? `notebook: ${run.notebook}` : '',
    run.created_at ? `created: ${String(run.created_at).slice(0, 19).replace('T', ' ')}` : '',
    group('params.') ? `params: ${group('params.')}` : '',
    group('metrics.') ? `metrics: ${group('metrics.')}` : ''
  ];
  if (FINAL.has(run.status) && run.notebook) {
    lines.push('Click to open the executed notebook.');
  }
  return lines.filter(Boolean).join('\n');
}

/** What a row calls a run: its name tag when it has one, else the random part of its id. */
function shortName(run: IRunRow): string {
  const name = run['tags.name'] ?? run['tags.run_name'];
  return typeof name === 'string' && name ? name : run.run_id.split('-').pop() ?? run.run_id;
}

export class RunsSection {
  constructor(readonly section: SidebarSection, private actions: IRunsActions) {
    if (actions.openRunsTable) {
      const open = actions.openRunsTable;
      const all = button('All runs…', 'Open the table of all runs in the main area', () => open());
      all.classList.add('wb-Runs-all');
      section.actions.prepend(all);
    }
    const toolbar = el('div', 'wb-Runs-toolbar');
    // A native select (keyboard, long lists) under a label that ellipsises the name and always
    // shows the run count: a narrow select would cut "wine-sweep (18)" to "wine-sweep (1".
    const picker = el('div', 'wb-Picker');
    this.pickerName = el('span', 'wb-Picker-name', 'All experiments');
    this.pickerCount = el('span', 'wb-Picker-count');
    this.experimentSelect = el('select', 'wb-Runs-experiment wb-Picker-select');
    this.experimentSelect.setAttribute('aria-label', 'Experiment');
    this.experimentSelect.onchange = () => {
      this.updatePicker();
      void this.load(true);
    };
    picker.append(
      this.pickerName,
      this.pickerCount,
      caretDownIcon.element({ tag: 'span', elementSize: 'small', className: 'wb-Picker-caret' }),
      this.experimentSelect
    );
    this.compareButton = button('Compare', 'Compare the selected runs', () => this.compareSelected());
    this.compareButton.classList.add('wb-Runs-compare');
    this.compareButton.disabled = true;
    toolbar.append(picker, this.compareButton);
    section.addToolbar(toolbar);
  }

  private pickerName: HTMLElement;
  private pickerCount: HTMLElement;
  private experimentSelect: HTMLSelectElement;
  private compareButton: HTMLButtonElement;
  private experiments: IExperiment[] = [];
  private selected = new Set<string>();
  private runs: IRunRow[] = [];
  private lastRunsJSON = '';

  async loadExperiments(): Promise<void> {
    let experiments: IExperiment[];
    try {
      experiments = await requestAPI<IExperiment[]>('experiments');
    } catch {
      return; // the list below shows the error
    }
    this.experiments = experiments;
    const select = this.experimentSelect;
    const current = select.value;
    select.textContent = '';
    const total = experiments.reduce((sum, exp) => sum + exp.runs, 0);
    const all = el('option', '', `All experiments (${total})`);
    all.value = '';
    select.appendChild(all);
    for (const exp of experiments) {
      const option = el('option', '', `${exp.name} (${exp.runs})`);
      option.value = exp.name;
      option.selected = exp.name === current;
      select.appendChild(option);
    }
    this.updatePicker();
    this.updateFooter();
  }

  /** The label over the select: the chosen experiment (ellipsised) and its run count (always shown). */
  private updatePicker(): void {
    const name = this.experimentSelect.value;
    const found = this.experiments.find(exp => exp.name === name);
    const count = name ? found?.runs : this.experiments.reduce((sum, exp) => sum + exp.runs, 0);
    this.pickerName.textContent = name || 'All experiments';
    this.pickerCount.textContent = count === undefined ? '' : `(${count})`;
    this.experimentSelect.title = `${name || 'All experiments'}${count === undefined ? '' : ` (${count} runs)`}`;
    this.section.setCount(count === undefined ? '' : String(count), `${count} runs`);
  }

  async load(force: boolean): Promise<void> {
    let rows: IRunRow[];
    try {
      rows = await requestAPI<IRunRow[]>('runs', {}, {
        experiment: this.experimentSelect.value || undefined,
        limit: String(RUNS_LIMIT)
      });
    } catch (error) {
      this.lastRunsJSON = '';
      showError(this.section.body, error);
      return;
    }
    const text = JSON.stringify(rows);
    if (!force && text === this.lastRunsJSON) {
      return;
    }
    const known = new Set(rows.map(r => r.run_id));
    if (rows.some(r => !this.runs.find(old => old.run_id === r.run_id))) {
      void this.loadExperiments();
    }
    this.lastRunsJSON = text;
    this.runs = rows;
    this.selected.forEach(id => known.has(id) || this.selected.delete(id));
    this.render();
  }

  private render(): void {
    const body = this.section.body;
    const scroll = body.scrollTop;
    body.textContent = '';
    this.updateCompareButton();
    if (!this.runs.length) {
      body.appendChild(el('div', 'wb-Empty', 'No runs yet: use "Run as experiment" on a notebook.'));
      return;
    }
    const keys = keyMetrics(this.runs);
    const showExperiment = new Set(this.runs.map(r => r.experiment)).size > 1;
    const list = el('ul', 'wb-List wb-Runs');
    list.setAttribute('aria-label', 'Recent runs');
    for (const run of this.runs) {
      list.appendChild(this.row(run, keys.get(run.experiment) ?? null, showExperiment));
    }
    body.appendChild(list);
    this.footer = el('div', 'wb-Runs-footer');
    body.appendChild(this.footer);
    this.updateFooter();
    body.scrollTop = scroll;
  }

  private footer: HTMLElement | null = null;

  /** Under a full list: "The 50 most recent of 312 runs", and the way to the rest. */
  private updateFooter(): void {
    const footer = this.footer;
    if (!footer || !footer.isConnected) {
      return;
    }
    footer.textContent = '';
    const name = this.experimentSelect.value;
    const total = name
      ? this.experiments.find(exp => exp.name === name)?.runs ?? 0
      : this.experiments.reduce((sum, exp) => sum + exp.runs, 0);
    if (this.runs.length < RUNS_LIMIT || total <= this.runs.length) {
      return;
    }
    footer.appendChild(el('span', 'wb-Muted', `The ${this.runs.length} most recent of ${total} runs.`));
    if (this.actions.openRunsTable) {
      const open = this.actions.openRunsTable;
      const link = el('button', 'wb-Link', 'Open runs table');
      link.type = 'button';
      link.onclick = () => open();
      footer.appendChild(link);
    }
  }

  /** One line: checkbox, status, short id, experiment (when several), key metric; actions on hover (Cancel always). */
  private row(run: IRunRow, metric: string | null, showExperiment: boolean): HTMLElement {
    const row = el('li', 'wb-Run');
    row.dataset.runId = run.run_id;
    row.dataset.status = run.status;
    row.title = runTooltip(run);
    const check = el('input', 'wb-Run-select');
    check.type = 'checkbox';
    check.checked = this.selected.has(run.run_id);
    check.setAttribute('aria-label', `Select run ${run.run_id} for Compare`);
    check.onclick = event => event.stopPropagation();
    row.classList.toggle('wb-mod-selected', check.checked);
    check.onchange = () => {
      row.classList.toggle('wb-mod-selected', check.checked);
      if (check.checked) {
        preloadPlotly(); // the Compare view's charts need it: fetch it while the user picks runs
        this.selected.add(run.run_id);
      } else {
        this.selected.delete(run.run_id);
      }
      this.updateCompareButton();
    };
    row.append(
      check,
      el('span', `wb-Status wb-Status-${run.status} wb-Run-status`, run.status),
      el('span', 'wb-Run-id', shortName(run))
    );
    if (showExperiment) {
      row.appendChild(el('span', 'wb-Run-experiment', run.experiment));
    }
    // The key metric ends the line: its values form a right-aligned column down the list.
    const value = metric ? run[metric] : null;
    const shown = el('span', 'wb-Run-metric');
    if (metric && value !== null && value !== undefined) {
      shown.dataset.metric = metric.slice(8);
      shown.append(
        el('span', 'wb-Run-metricName', metric.slice(8)),
        document.createTextNode(' '), // `accuracy 0.973` when copied or read aloud
        el('span', 'wb-Run-metricValue', formatMetric(value))
      );
    }
    row.appendChild(shown);
    const actions = el('span', 'wb-Run-actions');
    if (FINAL.has(run.status)) {
      row.classList.add('wb-mod-final');
      if (run.notebook) {
        row.classList.add('wb-mod-openable');
        row.tabIndex = 0;
        row.onclick = () => this.actions.openNotebook(run.run_id);
        row.onkeydown = event => {
          if (event.key === 'Enter' && event.target === row) {
            this.actions.openNotebook(run.run_id);
          }
        };
      }
    }
    if (run.status === 'finished') {
      actions.appendChild(
        button(
          'Register run…',
          `Register this run's model as a new version and point "${PRODUCTION}" at it (its gates are checked first)`,
          () => void this.actions.promote(run.run_id)
        )
      );
    }
    if (!FINAL.has(run.status)) {
      actions.appendChild(button('Cancel', 'Stop this run', () => void this.cancel(run.run_id)));
    }
    if (actions.childElementCount) {
      row.appendChild(actions);
    }
    return row;
  }

  private updateCompareButton(): void {
    const count = this.selected.size;
    this.compareButton.disabled = count < 1;
    this.compareButton.textContent = count ? `Compare (${count})` : 'Compare';
  }

  private compareSelected(): void {
    const ids = this.runs.map(r => r.run_id).filter(id => this.selected.has(id));
    if (ids.length) {
      this.actions.compare(ids, null);
    }
  }

  private async cancel(runId: string): Promise<void> {
    try {
      await postAPI(`runs/${encodeURIComponent(runId)}/cancel`, {});
      Notification.info(`Cancelling run ${runId}.`, { autoClose: 3000 });
    } catch (error) {
      notifyError(`Cannot cancel run ${runId}: ${errorText(error)}`);
    }
    await this.load(true);
  }
}
