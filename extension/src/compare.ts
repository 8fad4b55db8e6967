/**
 * The Compare tab: plotly charts from GET compare plus a params/metrics table of the selected
 * runs in which the values that differ between runs stand out.
 *
 * plotly.js is large, so it is loaded on first use (a separate webpack chunk) rather than with
 * JupyterLab's start-up bundle.
 */
import { MainAreaWidget } from '@jupyterlab/apputils';
import { Widget } from '@lumino/widgets';

import { IRunRow, errorText, requestAPI } from './api';
import { workbenchIcon } from './icons';

interface ICompareResponse {
  run_ids: string[];
  metric: string | null;
  table: Record<string, any>[];
  figures: Record<string, { data: any[]; layout: any }>;
}

interface IRunDetail {
  run_id: string;
  experiment: string;
  status: string;
  params: Record<string, any>;
  metrics: Record<string, number | null>;
}

/** Run ids per GET runs request: the server caps a filter at 10,000 characters. */
const DETAILS_BATCH = 300;

/**
 * Params and last metric values of the runs, in `runIds` order, from a few GET runs requests
 * (`filter=run_id in (...)`) rather than one GET runs/<id> per run: 50 runs cost one request.
 */
async function loadDetails(runIds: string[]): Promise<IRunDetail[]> {
  const batches: string[][] = [];
  for (let i = 0; i < runIds.length; i += DETAILS_BATCH) {
    batches.push(runIds.slice(i, i + DETAILS_BATCH));
  }
  const answers = await Promise.all(
    batches.map(ids =>
      requestAPI<IRunRow[]>('runs', {}, {
        filter: `run_id in (${ids.map(id => `'${id}'`).join(', ')})`,
        limit: String(ids.length)
      })
    )
  );
  const byId = new Map<string, IRunRow>();
  answers.forEach(rows => rows.forEach(row => byId.set(row.run_id, row)));
  return runIds.map(id => {
    const row = byId.get(id);
    if (!row) {
      throw new Error(`No run ${id}.`);
    }
    const params: Record<string, any> = {};
    const metrics: Record<string, number | null> = {};
    for (const [key, value] of Object.entries(row)) {
      if (value === null || value === undefined) {
        continue;
      }
      if (key.startsWith('params.')) {
        params[key.slice(7)] = value;
      } else if (key.startsWith('metrics.')) {
        metrics[key.slice(8)] = value;
      }
    }
    return { run_id: id, experiment: row.experiment, status: row.status, params, metrics };
  });
}

let plotlyPromise: Promise<any> | null = null;

function loadPlotly(): Promise<any> {
  if (!plotlyPromise) {
    plotlyPromise = import('plotly.js-dist-min').then(
      (module: any) => module.default ?? module
    );
  }
  return plotlyPromise;
}

/** Start fetching plotly before it is needed (e.g. as soon as runs are ticked for comparing). */
export function preloadPlotly(): void {
  void loadPlotly().catch(() => {
    plotlyPromise = null; // retried on real use, which reports the error
  });
}

function formatValue(value: any): string {
  if (value === null || value === undefined) {
    return '—';
  }
  if (typeof value === 'number') {
    return Number.isInteger(value) ? String(value) : value.toPrecision(4);
  }
  return typeof value === 'string' ? value : JSON.stringify(value);
}

export class CompareView extends Widget {
  constructor(
    readonly runIds: string[],
    private metric: string | null
  ) {
    super();
    this.addClass('wb-CompareView');
    this.header = document.createElement('div');
    this.header.className = 'wb-CompareView-header';
    this.charts = document.createElement('div');
    this.charts.className = 'wb-CompareView-charts';
    this.table = document.createElement('div');
    this.table.className = 'wb-CompareView-table';
    this.node.append(this.header, this.charts, this.table);
    void this.load();
  }

  private header: HTMLElement;
  private metricSelect: HTMLSelectElement | null = null;
  private charts: HTMLElement;
  private table: HTMLElement;
  private details: IRunDetail[] = [];

  private async load(): Promise<void> {
    this.header.textContent = `Comparing ${this.runIds.length} runs…`;
    // The charts (one compare request + the plotly chunk) do not wait for the per-run details.
    const charts = this.renderCharts();
    try {
      this.details = await loadDetails(this.runIds);
    } catch (error) {
      this.header.textContent = `Cannot load the runs: ${errorText(error)}`;
      return;
    }
    const metrics = Array.from(
      new Set(this.details.flatMap(d => Object.keys(d.metrics)))
    ).sort();
    if (!this.metric || !metrics.includes(this.metric)) {
      this.metric = metrics[0] ?? null;
    }
    this.renderHeader(metrics);
    this.renderTable();
    await charts;
  }

  private renderHeader(metrics: string[]): void {
    this.header.textContent = '';
    const title = document.createElement('span');
    title.textContent = `Runs: ${this.runIds.join(', ')}`;
    this.header.appendChild(title);
    if (metrics.length) {
      const label = document.createElement('label');
      label.textContent = ' Metric ';
      const select = document.createElement('select');
      this.metricSelect = select;
      select.className = 'wb-CompareView-metric';
      for (const key of metrics) {
        const option = document.createElement('option');
        option.value = key;
        option.textContent = key;
        option.selected = key === this.metric;
        select.appendChild(option);
      }
      select.onchange = () => {
        this.metric = select.value;
        void this.renderCharts();
      };
      label.appendChild(select);
      this.header.appendChild(label);
    }
  }

  private renderTable(): void {
    const details = this.details;
    const rows: [string, string, any[]][] = [];
    rows.push(['run', 'experiment', details.map(d => d.experiment)]);
    rows.push(['run', 'status', details.map(d => d.status)]);
    const params = Array.from(new Set(details.flatMap(d => Object.keys(d.params)))).sort();
    for (const key of params) {
      rows.push(['param', key, details.map(d => d.params[key])]);
    }
    const metrics = Array.from(new Set(details.flatMap(d => Object.keys(d.metrics)))).sort();
    for (const key of metrics) {
      rows.push(['metric', key, details.map(d => d.metrics[key])]);
    }
    const table = document.createElement('table');
    table.className = 'wb-Table wb-CompareView-diff';
    const head = table.createTHead().insertRow();
    for (const text of ['', 'name', ...details.map(d => d.run_id)]) {
      const th = document.createElement('th');
      th.textContent = text;
      head.appendChild(th);
    }
    const body = table.createTBody();
    for (const [kind, name, values] of rows) {
      const tr = body.insertRow();
      const texts = values.map(formatValue);
      if (new Set(texts).size > 1) {
        tr.classList.add('wb-mod-differs');
      }
      tr.insertCell().textContent = kind;
      tr.insertCell().textContent = name;
      for (const text of texts) {
        tr.insertCell().textContent = text;
      }
    }
    this.table.textContent = '';
    const caption = document.createElement('h3');
    caption.textContent = 'Parameters and metrics (differences highlighted)';
    this.table.append(caption, table);
  }

  private async renderCharts(): Promise<void> {
    this.charts.textContent = 'Loading charts…';
    let result: ICompareResponse;
    let Plotly: any;
    try {
      [result, Plotly] = await Promise.all([
        requestAPI<ICompareResponse>('compare', {}, {
          run_ids: this.runIds.join(','),
          metric: this.metric ?? undefined
        }),
        loadPlotly()
      ]);
    } catch (error) {
      this.charts.textContent = `No charts: ${errorText(error)}`;
      return;
    }
    if (result.metric && result.metric !== this.metric) {
      this.metric = result.metric; // the server's choice when none was given
      if (this.metricSelect) {
        this.metricSelect.value = result.metric;
      }
    }
    this.charts.textContent = '';
    const entries = Object.entries(result.figures ?? {});
    if (!entries.length) {
      this.charts.textContent = 'No charts for these runs.';
    }
    for (const [name, figure] of entries) {
      const box = document.createElement('div');
      box.className = 'wb-CompareView-chart';
      box.dataset.figure = name;
      this.charts.appendChild(box);
      const layout = { autosize: true, height: 360, ...(figure.layout ?? {}) };
      await Plotly.newPlot(box, figure.data ?? [], layout, {
        responsive: true,
        displaylogo: false
      });
    }
  }

  protected onResize(): void {
    void loadPlotly().then(Plotly => {
      this.charts
        .querySelectorAll('.wb-CompareView-chart')
        .forEach(el => Plotly.Plots.resize(el));
    });
  }
}

export function openCompare(
  runIds: string[],
  metric: string | null,
  open: (widget: MainAreaWidget) => void
): MainAreaWidget {
  const content = new CompareView(runIds, metric);
  const widget = new MainAreaWidget({ content });
  widget.id = `workbench-compare-${Date.now()}`;
  widget.title.label = `Compare ${runIds.length} runs`;
  widget.title.icon = workbenchIcon;
  widget.title.closable = true;
  widget.addClass('wb-CompareWidget');
  open(widget);
  return widget;
}
