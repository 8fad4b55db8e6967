/**
 * The Monitor tab of a served model ("Monitor: NAME"): live quality per version over time, the
 * traffic split, latency p95, drift and the A/B verdict of each version against the baseline, from
 * GET models/<name>/monitor (its JSON shape: workbench/jupyter/monitor_handlers.py).
 *
 * The charts are the server's plotly figures (the same ones `LiveQuality.figures()` gives a notebook),
 * drawn with the Compare view's plotly loading and theming (compareCharts.ts, theme.ts). The view
 * polls every ~10 s while it is visible and stops when it is hidden or closed; a refresh redraws each
 * chart in place (`Plotly.react`, keeping a zoom), so the page does not jump. A failed refresh keeps
 * what is shown and says why in the message line.
 */
import { MainAreaWidget } from '@jupyterlab/apputils';
import { Widget } from '@lumino/widgets';

import { errorText, requestAPI } from './api';
import { CHART_CONFIG, IFigure, chartLayout, loadPlotly } from './compareCharts';
import { el } from './dom';
import { formatMetric } from './format';
import { workbenchIcon } from './icons';
import { chartAxes, plotlyThemeUpdate } from './theme';

/** How often an open, visible Monitor view asks again. */
const REFRESH_MS = 10_000;

const WINDOWS = ['15m', '1h', '6h', '1d'];
const SINCES: [string, string][] = [
  ['1d', 'last day'],
  ['7d', 'last 7 days'],
  ['30d', 'last 30 days'],
  ['all', 'everything']
];
/** Metrics that are shares of rows: their differences read in percentage points. */
const PROPORTIONS = new Set(['accuracy', 'error_rate']);
const METRIC_NAMES: Record<string, string> = { log_loss: 'log loss', error_rate: 'error rate', f1: 'macro F1' };

/** The class of a chart's box (tests count the plotly svgs in them). */
export const MONITOR_CHART_CLASS = 'wb-MonitorView-chart';

/** One comparison of GET models/<name>/monitor's `ab.results` (quality.abtest.ABResult.to_dict()). */
export interface IABResult {
  metric: string;
  a: number;
  b: number;
  n_a: number;
  n_b: number;
  value_a: number | null;
  value_b: number | null;
  /** oriented: positive = b better, whatever the metric */
  diff: number | null;
  ci_low: number | null;
  ci_high: number | null;
  p_value: number | null;
  test: string;
  needed_n: number | null;
  verdict: string;
  paired: boolean;
  reason: string;
}

/** GET models/<name>/monitor (see monitor_handlers.py). */
export interface IMonitorState {
  model: string;
  window: string;
  since: string | null;
  task: string;
  metrics: string[];
  counts: { outcomes?: number; matched?: number; duplicates?: number; unknown?: number; pending?: number };
  rows: Record<string, any>[];
  figures: Record<string, IFigure>;
  drift: { drifted?: string[]; live_rows?: number; reference?: string; threshold?: number; error?: string; hint?: string | null };
  ab: { baseline: number | null; alpha: number; results: IABResult[] } | null;
}

/** `12345` as `12,345`; `~1,900` for a rough count (two significant digits). */
function count(value: number, rough = false): string {
  const shown = rough && value >= 100 ? Number(value.toPrecision(2)) : value;
  return (rough ? '~' : '') + shown.toLocaleString('en-US');
}

/** A signed number with a real minus sign: `+2.1`, `−0.5`. */
function signed(value: number, digits: number): string {
  const text = Math.abs(value).toFixed(digits);
  return (value < 0 && Number(text) !== 0 ? '−' : '+') + text;
}

/**
 * One comparison as a sentence: `v3 vs v2: accuracy +2.1 pts [−0.5, +4.7], p=0.11 — not yet known;
 * ~1,900 more outcomes per arm needed`. Differences are oriented so that + means the newer is better.
 */
export function abLine(r: IABResult): string {
  const name = METRIC_NAMES[r.metric] ?? r.metric;
  const head = `v${r.b} vs v${r.a}: ${name}`;
  if (r.diff === null || r.ci_low === null || r.ci_high === null) {
    return `${head}: no outcomes to compare yet — ${r.verdict}`;
  }
  const points = PROPORTIONS.has(r.metric);
  const scale = points ? 100 : 1;
  const digits = points ? 1 : Math.max(2, 2 - Math.floor(Math.log10(Math.abs(r.diff) || 1)));
  const diff = `${signed(r.diff * scale, digits)}${points ? ' pts' : ''}`;
  const ci = `[${signed(r.ci_low * scale, digits)}, ${signed(r.ci_high * scale, digits)}]`;
  const p = r.p_value === null ? '' : r.p_value < 0.001 ? ', p<0.001' : `, p=${formatMetric(Number(r.p_value.toPrecision(2)))}`;
  let tail = '';
  const have = Math.min(r.n_a, r.n_b);
  if (r.verdict === 'not yet known' && r.needed_n !== null && r.needed_n > have) {
    tail = `; ${count(r.needed_n - have, true)} more ${r.paired ? 'paired outcomes' : 'outcomes per arm'} needed`;
  }
  return `${head} ${diff} ${ci}${p} — ${r.verdict}${tail}`;
}

/** Open Monitor views, re-coloured when the theme changes. */
const liveViews = new Set<MonitorView>();

/** Give every Monitor view's charts the current theme's colours (call after a theme change). */
export function restyleMonitors(): void {
  if (liveViews.size) {
    void loadPlotly().then(Plotly => liveViews.forEach(view => view.restyle(Plotly)));
  }
}

export class MonitorView extends Widget {
  constructor(readonly model: string) {
    super();
    this.addClass('wb-MonitorView');
    this.node.dataset.model = model;
    const controls = el('div', 'wb-MonitorView-controls');
    this.windowSelect = this.select('wb-MonitorView-window', 'Window', WINDOWS.map(w => [w, w]), '1h', controls);
    this.sinceSelect = this.select('wb-MonitorView-since', 'Since', SINCES, '7d', controls);
    this.status = el('span', 'wb-Muted wb-MonitorView-status');
    controls.appendChild(this.status);
    this.message = el('div', 'wb-MonitorView-message');
    this.message.setAttribute('role', 'status');
    this.empty = el('div', 'wb-MonitorView-empty');
    this.ab = el('div', 'wb-MonitorView-ab');
    this.charts = el('div', 'wb-MonitorView-charts');
    this.drift = el('div', 'wb-MonitorView-drift');
    this.node.append(controls, this.message, this.empty, this.ab, this.charts, this.drift);
    liveViews.add(this);
  }

  dispose(): void {
    if (this.isDisposed) {
      return;
    }
    this.stop();
    liveViews.delete(this);
    const boxes = [...this.boxes.values()];
    void loadPlotly().then(Plotly => boxes.forEach(box => Plotly.purge(box)));
    super.dispose();
  }

  /** Re-colour the drawn charts with the current theme. */
  restyle(Plotly: any): void {
    for (const chart of this.boxes.values()) {
      if ((chart as any)._fullLayout) {
        void Plotly.relayout(chart, plotlyThemeUpdate(chartAxes(chart)));
      }
    }
  }

  /** Ask the server now (a newer request makes an older, slower answer be ignored). */
  async refresh(): Promise<void> {
    const generation = ++this.generation;
    this.status.textContent = 'Updating…';
    let state: IMonitorState;
    try {
      const [plotly, answer] = [
        loadPlotly(),
        requestAPI<IMonitorState>(`models/${encodeURIComponent(this.model)}/monitor`, {}, {
          window: this.windowSelect.value,
          since: this.sinceSelect.value
        })
      ];
      plotly.catch(() => undefined); // reported below, after the answer
      state = await answer;
      if (generation !== this.generation || this.isDisposed) {
        return;
      }
      this.render(state);
      await this.drawCharts(await plotly, state);
    } catch (error) {
      if (generation === this.generation && !this.isDisposed) {
        this.message.textContent = `Cannot update the monitor of ${this.model}: ${errorText(error)}`;
        this.message.classList.add('wb-Error');
        this.status.textContent = '';
      }
      return;
    }
    const clock = new Date().toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' });
    this.status.textContent = `${this.summary(state)} · updated ${clock}`;
  }

  /** Shown in a tab: attached to the page (a new tab) or made visible again (its tab selected). */
  protected onAfterAttach(): void {
    this.start();
  }

  protected onAfterShow(): void {
    this.start();
  }

  protected onAfterHide(): void {
    this.stop();
  }

  protected onBeforeDetach(): void {
    this.stop();
  }

  protected onResize(): void {
    if (this.isVisible && this.boxes.size) {
      void loadPlotly().then(Plotly => {
        this.boxes.forEach(chart => {
          if ((chart as any)._fullLayout) {
            void Plotly.Plots.resize(chart).catch(() => undefined);
          }
        });
      });
    }
  }

  /** Refresh now and every REFRESH_MS while visible (no-op while hidden or already polling). */
  private start(): void {
    if (!this.isVisible || this.timer !== null) {
      return;
    }
    void this.refresh();
    this.timer = window.setInterval(() => {
      if (this.isVisible && !this.busy) {
        this.busy = true;
        void this.refresh().finally(() => (this.busy = false));
      }
    }, REFRESH_MS);
  }

  private stop(): void {
    if (this.timer !== null) {
      window.clearInterval(this.timer);
      this.timer = null;
    }
  }

  private select(
    className: string,
    label: string,
    options: [string, string][],
    selected: string,
    parent: HTMLElement
  ): HTMLSelectElement {
    const wrapper = el('label', 'wb-MonitorView-control', `${label} `);
    const node = el('select', className);
    for (const [value, text] of options) {
      const option = el('option', '', text);
      option.value = value;
      option.selected = value === selected;
      node.appendChild(option);
    }
    node.onchange = () => void this.refresh();
    wrapper.appendChild(node);
    parent.appendChild(wrapper);
    return node;
  }

  /** `400 requests · 360 outcomes (40 pending, 2 duplicates, 1 unknown)`. */
  private summary(state: IMonitorState): string {
    const requests = state.rows.filter(row => !row.shadow).reduce((sum, row) => sum + (row.requests ?? 0), 0);
    const c = state.counts;
    const extra = [
      c.pending ? `${count(c.pending)} pending` : '',
      c.duplicates ? `${count(c.duplicates)} duplicates` : '',
      c.unknown ? `${count(c.unknown)} unknown ids` : ''
    ].filter(Boolean);
    return `${count(requests)} requests · ${count(c.matched ?? 0)} outcomes${extra.length ? ` (${extra.join(', ')})` : ''}`;
  }

  /** The message line, the empty state, the A/B verdicts and the drift summary. */
  private render(state: IMonitorState): void {
    this.message.textContent = '';
    this.message.classList.remove('wb-Error');
    this.empty.textContent = '';
    const since = this.sinceSelect.selectedOptions[0]?.textContent ?? state.since ?? '';
    if (!state.rows.length) {
      this.empty.append(
        el('div', 'wb-MonitorView-emptyTitle', `No predictions of ${state.model} logged (${since}).`),
        el(
          'div',
          '',
          `Serve it ('workbench serve ${state.model}@production', optionally with --canary VERSION or --shadow ` +
            'VERSION) and send requests to POST /predict; then report what really happened with POST /feedback ' +
            `{"request_id", "outcome"} or in bulk: 'workbench monitor outcomes ${state.model} --from FILE'.`
        )
      );
    } else if (!(state.counts.matched ?? 0)) {
      this.empty.append(
        el('div', 'wb-MonitorView-emptyTitle', 'Predictions are logged, but no outcomes yet: no live metrics.'),
        el(
          'div',
          '',
          'Report outcomes by the request_id the server answered with: POST /feedback {"request_id", "outcome"}, ' +
            `wb.log_outcomes("${state.model}", frame) or 'workbench monitor outcomes ${state.model} --from FILE'.`
        )
      );
    }
    this.renderAB(state);
    this.renderDrift(state);
  }

  private renderAB(state: IMonitorState): void {
    this.ab.textContent = '';
    const results = state.ab?.results ?? [];
    if (!results.length) {
      return;
    }
    this.ab.appendChild(el('h3', '', `A/B against v${state.ab?.baseline} (+ means the other version is better)`));
    const list = el('ul', 'wb-MonitorView-abList');
    for (const result of results) {
      const item = el('li', `wb-MonitorView-abLine wb-mod-${result.verdict.replace(/ /g, '-')}`, abLine(result));
      item.dataset.pair = `${result.a}-${result.b}`;
      item.dataset.metric = result.metric;
      item.title = `${result.reason}\n(${result.test}${result.paired ? ', paired' : ''})`;
      list.appendChild(item);
    }
    this.ab.appendChild(list);
  }

  private renderDrift(state: IMonitorState): void {
    this.drift.textContent = '';
    const drift = state.drift ?? {};
    if (drift.error) {
      if (state.rows.length) {
        this.drift.appendChild(el('div', 'wb-Muted', `No drift report: ${drift.error}${drift.hint ? ' ' + drift.hint : ''}`));
      }
      return;
    }
    const drifted = drift.drifted ?? [];
    this.drift.appendChild(
      el(
        'div',
        drifted.length ? 'wb-MonitorView-drifted' : 'wb-Muted',
        drifted.length
          ? `Input drift (PSI > ${drift.threshold}) in: ${drifted.join(', ')} — ${drift.live_rows} live rows vs ${drift.reference}`
          : `No input drift above PSI ${drift.threshold}: ${drift.live_rows} live rows vs ${drift.reference}`
      )
    );
  }

  /** Each figure drawn in its own box, redrawn in place on a refresh; boxes of figures gone are removed. */
  private async drawCharts(Plotly: any, state: IMonitorState): Promise<void> {
    const names = Object.keys(state.figures ?? {});
    for (const [name, box] of [...this.boxes]) {
      if (!names.includes(name)) {
        Plotly.purge(box);
        box.remove();
        this.boxes.delete(name);
      }
    }
    for (const name of names) {
      let box = this.boxes.get(name);
      if (!box) {
        box = el('div', MONITOR_CHART_CLASS);
        box.dataset.figure = name;
        this.boxes.set(name, box);
      }
      const target = name === 'drift' ? this.drift : this.charts;
      target.appendChild(box); // in the answer's order
      const figure = state.figures[name];
      await Plotly.react(box, figure.data ?? [], { ...chartLayout(figure), height: 320, uirevision: name }, CHART_CONFIG);
    }
  }

  private windowSelect: HTMLSelectElement;
  private sinceSelect: HTMLSelectElement;
  private status: HTMLElement;
  private message: HTMLElement;
  private empty: HTMLElement;
  private ab: HTMLElement;
  private charts: HTMLElement;
  private drift: HTMLElement;
  private boxes = new Map<string, HTMLElement>();
  private timer: number | null = null;
  private busy = false;
  private generation = 0;
}

/** The Monitor tab of `model`: a new one, or `existing` when it is still open. */
export function openMonitor(
  model: string,
  existing: MainAreaWidget<MonitorView> | undefined,
  open: (widget: MainAreaWidget) => void
): MainAreaWidget<MonitorView> {
  if (existing && !existing.isDisposed) {
    open(existing);
    return existing;
  }
  const widget = new MainAreaWidget({ content: new MonitorView(model) });
  widget.id = `workbench-monitor-${model}`;
  widget.title.label = `Monitor: ${model}`;
  widget.title.caption = `Live quality, traffic, latency, drift and A/B verdicts of model ${model}`;
  widget.title.icon = workbenchIcon;
  widget.title.closable = true;
  widget.addClass('wb-MonitorWidget');
  open(widget);
  return widget;
}
