/**
 * The Compare tab: a params/metrics table of the selected runs in which the values that differ
 * between runs stand out, then plotly charts from GET compare. Runs are named by their labels
 * (the params that differ between them, `lr=0.1`); run ids are in tooltips and hover texts.
 *
 * The table comes first and scrolls inside its own panel, its name column kept in view.
 *
 * plotly.js is large, so it is loaded on first use (a separate webpack chunk) rather than with
 * JupyterLab's start-up bundle. Charts take the JupyterLab theme's colours when drawn and again
 * when the theme changes (`restyleCharts`). How the charts are drawn quickly, the parallel
 * coordinates (WebGL) above all: `compareCharts.ts`.
 */
import { MainAreaWidget } from '@jupyterlab/apputils';
import { Widget } from '@lumino/widgets';

import { errorText, requestAPI } from './api';
import {
  CHART_CLASS,
  CHART_CONFIG,
  IFigure,
  SpareParcoords,
  chartLayout,
  isParcoords,
  loadPlotly,
  nextTask,
  plotlyLoaded
} from './compareCharts';
import { el } from './dom';
import { formatValue } from './format';
import { workbenchIcon } from './icons';
import { chartAxes, plotlyThemeUpdate } from './theme';

export { preloadPlotly } from './compareCharts';

interface ICompareResponse {
  run_ids: string[];
  metric: string | null;
  /** experiment and status of each run */
  runs: { run_id: string; experiment: string; status: string }[];
  /** run id -> label: the params that differ between the runs (`lr=0.1, depth=3`) */
  labels?: Record<string, string>;
  /** one row per key (params.x / metrics.y / tags.z): a value per run id, and `differs` */
  table: Record<string, any>[];
  figures: Record<string, IFigure>;
}

/**
 * Up to this many runs, the stand-in parallel-coordinates chart (compareCharts.ts) is drawn while
 * the server builds the comparison: the server answers in about the time the stand-in takes.
 * Beyond, the stand-in's work in the GPU process (about a second of CPU without a GPU) would slow
 * the server down on a small machine: it is drawn after the first chart, and its shaders compile
 * while the page draws the other charts.
 */
const PREPARE_WHILE_WAITING = 200;

/** Differing params named in the header; beyond that, "and N more". */
const HEADER_PARAMS = 6;

/** The table's row groups, in order: the prefix of the keys, and the group's heading. */
const GROUPS: [string, string][] = [
  ['params.', 'Parameters'],
  ['metrics.', 'Metrics'],
  ['tags.', 'Tags']
];

/** A table cell's text: numbers with up to six significant digits (so 0.98 and 0.9801 differ). */
function cellText(value: any): string {
  if (typeof value === 'number' && !Number.isInteger(value) && Number.isFinite(value)) {
    const short = String(Number(value.toPrecision(6)));
    return short.length > 12 ? value.toExponential(4) : short;
  }
  return formatValue(value, '—');
}

/** Open Compare views, re-coloured when the theme changes. */
const liveViews = new Set<CompareView>();

/** Give every drawn chart the current theme's colours (call after a theme change). */
export function restyleCharts(): void {
  if (!liveViews.size) {
    return;
  }
  void loadPlotly().then(Plotly => liveViews.forEach(view => view.restyle(Plotly)));
}

export class CompareView extends Widget {
  constructor(
    readonly runIds: string[],
    private metric: string | null
  ) {
    super();
    this.addClass('wb-CompareView');
    this.header = el('div', 'wb-CompareView-header');
    this.table = el('div', 'wb-CompareView-table');
    this.charts = el('div', 'wb-CompareView-charts');
    const spareHolder = el('div', 'wb-CompareView-spare');
    spareHolder.setAttribute('aria-hidden', 'true');
    this.spare = new SpareParcoords(spareHolder);
    this.node.append(this.header, this.table, this.charts, spareHolder);
    liveViews.add(this);
    void this.load();
  }

  dispose(): void {
    if (this.isDisposed) {
      return;
    }
    liveViews.delete(this);
    this.spare.discard();
    this.charts.querySelectorAll<HTMLElement>(`.${CHART_CLASS}`).forEach(box => {
      if (box.querySelector('canvas.gl-canvas')) {
        SpareParcoords.free(box); // WebGL contexts: a page gets only so many
      }
    });
    super.dispose();
  }

  /** Re-colour the drawn charts with the current theme. */
  restyle(Plotly: any): void {
    this.charts.querySelectorAll<HTMLElement>(`.${CHART_CLASS}`).forEach(chart => {
      if ((chart as any)._fullLayout) {
        void Plotly.relayout(chart, plotlyThemeUpdate(chartAxes(chart)));
      }
    });
  }

  private header: HTMLElement;
  private metricSelect: HTMLSelectElement | null = null;
  private charts: HTMLElement;
  private table: HTMLElement;
  /** A parallel-coordinates chart drawn ahead of its data (see compareCharts.ts). */
  private spare: SpareParcoords;
  /** Whether the last answer had parallel coordinates (null before the first one). */
  private hadParcoords: boolean | null = null;
  /** Bumped by each renderCharts call, so an older, slower one stops drawing. */
  private chartsGeneration = 0;

  private async load(): Promise<void> {
    this.header.textContent = `Comparing ${this.runIds.length} runs…`;
    // One request brings the table, the charts and the metric list: the table (first on the
    // page) is drawn as soon as the answer is in, the charts after it one at a time.
    await this.renderCharts(result => {
      const metrics = result.table
        .map(row => String(row.key))
        .filter(key => key.startsWith('metrics.'))
        .map(key => key.slice(8));
      this.renderHeader(result, metrics);
      this.renderTable(result);
    });
  }

  private renderHeader(result: ICompareResponse, metrics: string[]): void {
    this.header.textContent = '';
    const varying = result.table
      .filter(row => row.differs && String(row.key).startsWith('params.'))
      .map(row => String(row.key).slice(7));
    const named = varying.slice(0, HEADER_PARAMS).join(', ');
    const more = varying.length - HEADER_PARAMS;
    const title = el(
      'span',
      'wb-CompareView-title',
      `Comparing ${result.run_ids.length} runs` +
        (varying.length ? ` · they differ in ${named}${more > 0 ? ` and ${more} more` : ''}` : '')
    );
    title.title = result.run_ids.map(id => `${result.labels?.[id] ?? id}: ${id}`).join('\n');
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
    const table = el('table', 'wb-Table wb-CompareView-diff');
    const head = table.createTHead().insertRow();
    head.appendChild(el('th', 'wb-CompareView-name', 'run'));
    for (const id of ids) {
      const run = runs.get(id);
      const th = el('th', 'wb-CompareView-run');
      // one unbreakable piece per `name=value`, so a label wraps only between params
      (result.labels?.[id] ?? id).split(', ').forEach((part, index, parts) => {
        const last = index === parts.length - 1;
        th.append(el('span', 'wb-CompareView-labelPart', last ? part : `${part},`), last ? '' : ' ');
      });
      th.dataset.runId = id;
      th.title = `run ${id}` + (run ? `\nexperiment ${run.experiment}, ${run.status}` : '');
      head.appendChild(th);
    }
    const body = table.createTBody();
    const addRow = (name: string, values: any[], differs: boolean, key = ''): void => {
      const tr = body.insertRow();
      if (differs) {
        tr.classList.add('wb-mod-differs');
      }
      if (key) {
        tr.dataset.key = key;
      }
      const th = el('th', 'wb-CompareView-name', name);
      th.scope = 'row';
      tr.appendChild(th);
      for (const value of values) {
        const td = tr.insertCell();
        td.textContent = cellText(value);
        if (typeof value === 'number') {
          td.classList.add('wb-Num');
        }
      }
    };
    const addGroup = (heading: string): void => {
      const tr = body.insertRow();
      tr.className = 'wb-CompareView-group';
      tr.appendChild(el('th', 'wb-CompareView-name', heading));
      tr.insertCell().colSpan = ids.length;
    };
    addGroup('Run');
    for (const field of ['experiment', 'status'] as const) {
      const values = ids.map(id => runs.get(id)?.[field]);
      addRow(field, values, new Set(values).size > 1);
    }
    for (const [prefix, heading] of GROUPS) {
      const rows = result.table.filter(row => String(row.key).startsWith(prefix));
      if (!rows.length) {
        continue;
      }
      addGroup(heading);
      for (const row of rows) {
        const key = String(row.key);
        addRow(key.slice(prefix.length), ids.map(id => row[id]), Boolean(row.differs), key);
      }
    }
    this.table.textContent = '';
    const caption = el('h3', '', 'Parameters and metrics (differences highlighted)');
    const panel = el('div', 'wb-CompareView-tablePanel');
    panel.appendChild(table);
    this.table.append(caption, panel);
  }

  /** Request the comparison for the current metric and draw its charts; `onResult` (e.g. the
   * table) runs with the answer, before the first chart is drawn. */
  private async renderCharts(onResult?: (result: ICompareResponse) => void): Promise<void> {
    const generation = ++this.chartsGeneration;
    // the parallel coordinates of the metric shown so far: their WebGL contexts serve the next ones
    this.charts.querySelectorAll<HTMLElement>(`.${CHART_CLASS}`).forEach(box => {
      if (box.querySelector('canvas.gl-canvas')) {
        this.spare.keep(box);
      }
    });
    this.charts.textContent = 'Loading charts…';
    const plotly = loadPlotly(); // fetched while the server builds the comparison
    plotly.catch(() => undefined); // reported below, once the table is shown
    let answered = false;
    const request = requestAPI<ICompareResponse>('compare', {}, {
      run_ids: this.runIds.join(','),
      metric: this.metric ?? undefined
    });
    const done = (): void => {
      answered = true;
    };
    request.then(done, done);
    void this.prepareWhileWaiting(plotly, () => answered || generation !== this.chartsGeneration);
    let result: ICompareResponse;
    try {
      result = await request;
    } catch (error) {
      if (generation === this.chartsGeneration) {
        this.charts.textContent = `No charts: ${errorText(error)}`;
        if (onResult) {
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
    }
    onResult?.(result); // the table: shown without waiting for plotly
    if (this.metricSelect && this.metric) {
      this.metricSelect.value = this.metric;
    }
    let Plotly: any;
    try {
      Plotly = await plotly;
    } catch (error) {
      if (generation === this.chartsGeneration) {
        this.charts.textContent = `No charts: ${errorText(error)}`;
      }
      return;
    }
    if (generation !== this.chartsGeneration) {
      return;
    }
    this.charts.textContent = '';
    const entries = Object.entries(result.figures ?? {});
    if (!entries.length) {
      this.charts.textContent = 'No charts for these runs.';
    }
    // Every chart's box in place first (the page does not shift as they are drawn), then the
    // charts one per task: the table and each chart are painted as soon as they are drawn, and
    // the page stays responsive meanwhile (all in one go took seconds).
    const boxes = entries.map(([name]): HTMLElement => {
      const box = el('div', CHART_CLASS);
      box.dataset.figure = name;
      return box;
    });
    this.charts.append(...boxes);
    // Parallel coordinates last: their WebGL set-up goes on in the GPU process while the others
    // are drawn (see compareCharts.ts).
    const order = entries.map((_, index) => index);
    const parcoords = order.filter(index => isParcoords(entries[index][1]));
    this.hadParcoords = parcoords.length > 0;
    if (!parcoords.length) {
      this.spare.discard();
    }
    order.sort((a, b) => Number(parcoords.includes(a)) - Number(parcoords.includes(b)));
    for (const [step, index] of order.entries()) {
      if (!(await this.stillCurrent(generation))) {
        return;
      }
      if (step === 1 && parcoords.length) {
        // the first chart is painted: set up the parallel coordinates' WebGL while drawing the rest
        this.spare.prepare(Plotly); // (no-op when there is a spare already)
      }
      const figure = entries[index][1];
      const [data, layout] = [figure.data ?? [], chartLayout(figure)];
      if (!parcoords.includes(index)) {
        await Plotly.newPlot(boxes[index], data, layout, CHART_CONFIG);
        continue;
      }
      const spare = await this.spare.take();
      if (generation !== this.chartsGeneration) {
        if (spare) {
          this.spare.keep(spare);
        }
        return;
      }
      if (!spare) {
        await Plotly.newPlot(boxes[index], data, layout, CHART_CONFIG);
        continue;
      }
      // the stand-in's (or the previous metric's) WebGL contexts, shaders compiled: redrawn quickly
      spare.classList.add(CHART_CLASS); // added: plotly marks its charts with a class of its own
      spare.dataset.figure = entries[index][0];
      boxes[index].replaceWith(spare);
      boxes[index] = spare;
      await Plotly.react(spare, data, layout, CHART_CONFIG);
    }
  }

  /**
   * While the server builds the comparison, once the tab is painted and plotly is loaded, draw
   * the stand-in parallel-coordinates chart (see compareCharts.ts), for up to
   * `PREPARE_WHILE_WAITING` runs and unless the answer is in by then (`answered`). Not while plotly
   * is still being loaded (runs ticked a moment before): evaluating it keeps the page busy while
   * the server works already, and the stand-in would then hold the table back. Nor for another
   * metric of runs whose params do not differ: their answer had no parallel coordinates before.
   * Otherwise the stand-in is drawn after the first chart (`renderCharts`).
   */
  private async prepareWhileWaiting(plotly: Promise<any>, answered: () => boolean): Promise<void> {
    const many = this.runIds.length > PREPARE_WHILE_WAITING;
    if (many || !plotlyLoaded() || this.hadParcoords === false) {
      return;
    }
    let Plotly: any;
    try {
      await nextTask();
      Plotly = await plotly;
    } catch {
      return; // reported by renderCharts
    }
    if (!answered() && !this.isDisposed) {
      this.spare.prepare(Plotly);
    }
  }

  /** After the next paint: false when a newer renderCharts call took over meanwhile. */
  private async stillCurrent(generation: number): Promise<boolean> {
    await nextTask();
    return generation === this.chartsGeneration;
  }

  protected onResize(): void {
    if (!this.isVisible) {
      return; // plotly cannot size a hidden chart
    }
    void loadPlotly().then(Plotly => {
      this.charts.querySelectorAll<HTMLElement>(`.${CHART_CLASS}`).forEach(chart => {
        if ((chart as any)._fullLayout) {
          void Plotly.Plots.resize(chart).catch(() => undefined);
        }
      });
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
