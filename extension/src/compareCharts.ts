/**
 * Drawing the Compare view's plotly charts: plotly itself (a separate webpack chunk, loaded on
 * first use), the options every chart is drawn with, and a parallel-coordinates chart prepared
 * before its data arrives.
 *
 * Why the last: plotly draws parallel coordinates with WebGL, in three canvases of their own, and
 * the first drawing in a new WebGL context compiles plotly's line shaders, while the page waits
 * (plotly reads a pixel back between the chart's panels). With a GPU that takes milliseconds;
 * without one (software GL: remote desktops, VMs, headless browsers) it took ~0.9 s of the ~1.6 s
 * the whole view of 50 runs took to draw. Drawn again in the same contexts it takes ~0.2 s. So a
 * stand-in chart (two axes, no panel to read back between) is drawn hidden ahead of time: it sets
 * up the contexts and sends its drawing to the browser's GPU process, where the shaders compile
 * while the page does other things; the real chart is then drawn in the same contexts
 * (`Plotly.react` on the stand-in's box). The stand-in is drawn while the server builds the
 * comparison (the page has nothing else to do then) or else after the first chart, with the
 * parallel coordinates drawn last (see `CompareView.renderCharts` and `prepareWhileWaiting`).
 */
import { themedLayout } from './theme';

let plotlyPromise: Promise<any> | null = null;
let plotlyReady = false;

export function loadPlotly(): Promise<any> {
  if (!plotlyPromise) {
    plotlyPromise = import('plotly.js-dist-min').then((module: any) => {
      plotlyReady = true;
      return module.default ?? module;
    });
  }
  return plotlyPromise;
}

/** Whether plotly is loaded and evaluated, not just asked for. */
export function plotlyLoaded(): boolean {
  return plotlyReady;
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
export function nextTask(): Promise<void> {
  return new Promise(resolve => {
    const timeout = setTimeout(resolve, 100);
    requestAnimationFrame(() => {
      clearTimeout(timeout);
      setTimeout(resolve, 0);
    });
  });
}

/** A figure as the compare API sends it (plotly's JSON). */
export interface IFigure {
  data: any[];
  layout: any;
}

/** The class of a chart's box, drawn or still empty (tests and the benchmark look for it). */
export const CHART_CLASS = 'wb-CompareView-chart';

/**
 * plotly's options for every chart. Not `responsive`: that adds a window resize listener per
 * chart, while the view already resizes its charts when its own size changes (`onResize`).
 * (The parallel coordinates' WebGL canvases keep plotly's pixel ratio of 2: at the screen's ratio
 * they drew a third faster without a GPU, but their lines came out visibly bolder.)
 */
export const CHART_CONFIG = { responsive: false, displaylogo: false };

/** A figure's layout as drawn: its own, the box's width, a fixed height, the theme's colours. */
export function chartLayout(figure: IFigure): Record<string, any> {
  return themedLayout({ autosize: true, height: 360, ...(figure.layout ?? {}) });
}

export function isParcoords(figure: IFigure): boolean {
  return (figure.data ?? []).some(trace => trace?.type === 'parcoords');
}

/** The stand-in: two axes, two lines coloured on a scale with a colour bar, like the real one. */
const STAND_IN = [
  {
    type: 'parcoords',
    line: { color: [0, 1], colorscale: 'Viridis', showscale: true },
    dimensions: [
      { label: ' ', values: [0, 1] },
      { label: ' ', values: [1, 0] }
    ]
  }
];

/** The WebGL contexts of a drawn parcoords chart (plotly's `.gl-canvas` canvases). */
function glContexts(box: HTMLElement): WebGLRenderingContext[] {
  const contexts: WebGLRenderingContext[] = [];
  box.querySelectorAll<HTMLCanvasElement>('canvas.gl-canvas').forEach(canvas => {
    // the context plotly made: a canvas has one context, which getContext returns again
    const gl = canvas.getContext('webgl');
    if (gl) {
      contexts.push(gl);
    }
  });
  return contexts;
}

/**
 * A parallel-coordinates chart kept ready for the view's next one: the stand-in drawn while the
 * server works, or the chart of the metric shown before. It sits in `holder`, a hidden box as wide
 * as the charts, until `take` hands it over.
 */
export class SpareParcoords {
  constructor(private holder: HTMLElement) {}

  /** Draw the stand-in (unless there is a spare already): sets up WebGL contexts and shaders. */
  prepare(Plotly: any): void {
    if (this.box) {
      return;
    }
    const box = document.createElement('div');
    this.holder.appendChild(box);
    this.box = box;
    this.drawn = Promise.resolve(
      Plotly.newPlot(box, STAND_IN, chartLayout({ data: [], layout: {} }), CHART_CONFIG)
    )
      .then(() => {
        // A hidden canvas is not composited, so its drawing would wait until it is shown: send
        // it to the GPU process now, where the shaders compile while the page draws the rest.
        glContexts(box).forEach(gl => gl.flush());
        return true;
      })
      .catch(() => {
        this.discard();
        return false;
      });
  }

  /** Keep a drawn parcoords chart (of the metric shown before) as the spare. */
  keep(box: HTMLElement): void {
    if (this.box) {
      SpareParcoords.free(box);
      return;
    }
    box.classList.remove(CHART_CLASS); // not plotly's own class: Plotly.react needs it
    delete box.dataset.figure;
    this.holder.appendChild(box);
    this.box = box;
    this.drawn = Promise.resolve(true);
  }

  /** The spare, for drawing the real chart into with `Plotly.react`; null when there is none. */
  async take(): Promise<HTMLElement | null> {
    const box = this.box;
    if (!box || !(await this.drawn) || this.box !== box) {
      return null;
    }
    this.box = null;
    box.remove();
    return box;
  }

  /** Free the spare's WebGL contexts (a page gets only so many) when no chart needs it. */
  discard(): void {
    const box = this.box;
    this.box = null;
    if (box) {
      box.remove();
      SpareParcoords.free(box);
    }
  }

  /** Let go of a parcoords chart's WebGL contexts now rather than whenever they are collected. */
  static free(box: HTMLElement): void {
    glContexts(box).forEach(gl => gl.getExtension('WEBGL_lose_context')?.loseContext());
    void loadPlotly().then(Plotly => Plotly.purge(box));
  }

  private box: HTMLElement | null = null;
  private drawn: Promise<boolean> = Promise.resolve(false);
}
