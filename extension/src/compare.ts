/**
 * The Compare tab: plotly charts from GET compare plus a params/metrics table of the selected
 * runs in which the values that differ between runs stand out.
 *
 * plotly.js is large, so it is loaded on first use (a separate webpack chunk) rather than with
 * JupyterLab's start-up bundle. Charts take the JupyterLab theme's colours when drawn and again
 * when the theme changes (`restyleCharts`).
 */
import { MainAreaWidget } from '@jupyterlab/apputils';
import { Widget } from '@lumino/widgets';

import { errorText, requestAPI } from './api';
import { formatValue } from './format';
import { workbenchIcon } from './icons';
import { chartAxes, plotlyThemeUpdate, themedLayout } from './theme';

interface ICompareResponse {
  run_ids: string[];
  metric: string | null;
  /** experiment and status of each run */
  runs: { run_id: string; experiment: string; status: string }[];
  /** one row per key (params.x / metrics.y / tags.z): a value per run id, and `differs` */
  table: Record<string, any>[];
  figures: Record<string, { data: any[]; layout: any }>;
}

/** Ids named in the header; beyond that, "and N more" (all of them are in its tooltip). */
const HEADER_IDS = 8;

let plotlyPromise: Promise<any> | null = null;

/** Open Compare views, re-coloured when the theme changes. */
const liveViews = new Set<CompareView>();

/** Give every drawn chart the current theme's colours (call after a theme change). */
export function restyleCharts(): void {
  if (!liveViews.size) {
    return;
  }
  void loadPlotly().then(Plotly => liveViews.forEach(view => view.restyle(Plotly)));
}

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

/**
 * Resolves after the next frame was painted (a timer queued from requestAnimationFrame runs
 * after that frame), or after 100 ms where no frames come (a hidden browser tab).
 */
function nextTask(): Promise<void> {
  return new Promise(resolve => {
    const timeout = setTimeout(resolve, 100);
    requestAnimationFrame(() => {
      clearTimeout(timeout);
      setTimeout(resolve, 0);
    });
  });
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
    liveViews.add(this);
    void this.load();
  }

  dispose(): void {
    liveViews.delete(this);
    super.dispose();
  }

  /** Re-colour the drawn charts with the current theme. */
  restyle(Plotly: any): void {
    this.charts.querySelectorAll<HTMLElement>('.wb-CompareView-chart').forEach(chart => {
      if ((chart as any)._fullLayout) {
        void Plotly.relayout(chart, plotlyThemeUpdate(chartAxes(chart)));
      }
    });
  }

  private header: HTMLElement;
  private metricSelect: HTMLSelectElement | null = null;
  private charts: HTMLElement;
  private table: HTMLElement;
  /** Bumped by each renderCharts call, so an older, slower one stops drawing. */
  private chartsGeneration = 0;

  private async load(): Promise<void> {
    this.header.textContent = `Comparing ${this.runIds.length} runs…`;
    // One request brings the charts, the table and the metric list: the table is drawn right
    // after the first chart, so the view is useful before the heavier charts are done.
    await this.renderCharts(result => {
      const metrics = result.table
        .map(row => String(row.key))
        .filter(key => key.startsWith('metrics.'))
        .map(key => key.slice(8));
      this.renderHeader(metrics);
      this.renderTable(result);
    });
  }

  private renderHeader(metrics: string[]): void {
    this.header.textContent = '';
    const title = document.createElement('span');
    const shown = this.runIds.slice(0, HEADER_IDS).join(', ');
    const more = this.runIds.length - HEADER_IDS;
    title.textContent = `Runs: ${shown}${more > 0 ? ` and ${more} more` : ''}`;
    title.title = this.runIds.join('\n');
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

  private renderTable(result: ICompareResponse): void {
    const ids = result.run_ids;
    const runs = new Map(result.runs.map(r => [r.run_id, r]));
    const rows: [string, string, any[]][] = [
      ['run', 'experiment', ids.map(id => runs.get(id)?.experiment)],
      ['run', 'status', ids.map(id => runs.get(id)?.status)]
    ];
    for (const row of result.table) {
      const key = String(row.key);
      const dot = key.indexOf('.');
      const kind = key.slice(0, dot).replace(/s$/, ''); // params -> param, metrics -> metric
      rows.push([kind, key.slice(dot + 1), ids.map(id => row[id])]);
    }
    const table = document.createElement('table');
    table.className = 'wb-Table wb-CompareView-diff';
    const head = table.createTHead().insertRow();
    for (const text of ['', 'name', ...ids]) {
      const th = document.createElement('th');
      th.textContent = text;
      head.appendChild(th);
    }
    const body = table.createTBody();
    for (const [kind, name, values] of rows) {
      const tr = body.insertRow();
      const texts = values.map(value => formatValue(value, '—'));
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

  /** Request the comparison for the current metric and draw its charts; `afterFirst` runs once
   * the first chart is drawn (or right away when there is none). */
  private async renderCharts(afterFirst?: (result: ICompareResponse) => void): Promise<void> {
    const generation = ++this.chartsGeneration;
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
      if (generation === this.chartsGeneration) {
        this.charts.textContent = `No charts: ${errorText(error)}`;
        if (afterFirst) {
          this.header.textContent = `Cannot compare the runs: ${errorText(error)}`;
        }
      }
      return;
    }
    if (generation !== this.chartsGeneration) {
      return; // the metric changed meanwhile: a newer request draws the charts
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
    let pending = afterFirst;
    for (const [index, [name, figure]] of entries.entries()) {
      if (index > 0) {
        // One chart per task: each is painted as soon as it is drawn, and the page stays
        // responsive while the rest are drawn (all of them in one go took seconds, measured).
        if (!(await this.stillCurrent(generation))) {
          return;
        }
        if (pending) {
          pending(result); // e.g. the table: right after the first chart is painted
          pending = undefined;
          if (!(await this.stillCurrent(generation))) {
            return;
          }
        }
      }
      const box = document.createElement('div');
      box.className = 'wb-CompareView-chart';
      box.dataset.figure = name;
      this.charts.appendChild(box);
      const layout = themedLayout({ autosize: true, height: 360, ...(figure.layout ?? {}) });
      await Plotly.newPlot(box, figure.data ?? [], layout, {
        responsive: true,
        displaylogo: false
      });
    }
    pending?.(result);
  }

  /** After the next paint: false when a newer renderCharts call took over meanwhile. */
  private async stillCurrent(generation: number): Promise<boolean> {
    await nextTask();
    return generation === this.chartsGeneration;
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
