/**
 * Colours from the JupyterLab theme for what CSS cannot reach: plotly draws its charts with the
 * colours in its layout (the server's figures carry plotly's light template), so the theme's
 * background, text and grid colours are written into each chart's layout when it is drawn and
 * again whenever the theme changes.
 */

/** A theme variable's colour as the browser resolves it (`rgb(...)`), which plotly can parse. */
export function themeColor(variable: string, fallback: string): string {
  const raw = getComputedStyle(document.body).getPropertyValue(variable).trim();
  if (!raw) {
    return fallback;
  }
  const probe = document.createElement('span');
  probe.style.color = raw;
  if (!probe.style.color) {
    return fallback;
  }
  probe.style.display = 'none';
  document.body.appendChild(probe);
  const resolved = getComputedStyle(probe).color;
  probe.remove();
  return resolved || fallback;
}

const AXIS = /^[xy]axis\d*$/;

/**
 * The layout properties (plotly's dotted paths, as `Plotly.relayout` takes them) that make a chart
 * follow the theme: paper and plot background, text, grid and axis lines of every cartesian axis.
 */
export function plotlyThemeUpdate(axes: string[]): Record<string, string> {
  const background = themeColor('--jp-layout-color0', '#ffffff');
  const text = themeColor('--jp-ui-font-color1', '#000000');
  const grid = themeColor('--jp-border-color2', '#e0e0e0');
  const line = themeColor('--jp-border-color1', '#bdbdbd');
  const update: Record<string, string> = {
    paper_bgcolor: background,
    plot_bgcolor: background,
    'font.color': text,
    'title.font.color': text,
    'legend.bgcolor': 'rgba(0,0,0,0)',
    'legend.font.color': text
  };
  for (const axis of new Set(['xaxis', 'yaxis', ...axes.filter(name => AXIS.test(name))])) {
    update[`${axis}.gridcolor`] = grid;
    update[`${axis}.zerolinecolor`] = line;
    update[`${axis}.linecolor`] = line;
  }
  return update;
}

/** `layout` (left untouched) with the theme's colours set: for the first `Plotly.newPlot`. */
export function themedLayout(layout: Record<string, any>): Record<string, any> {
  const result: Record<string, any> = JSON.parse(JSON.stringify(layout ?? {}));
  if (typeof result.title === 'string') {
    result.title = { text: result.title }; // the old form: the title's font needs an object
  }
  for (const [path, value] of Object.entries(plotlyThemeUpdate(Object.keys(result)))) {
    const keys = path.split('.');
    let target = result;
    for (const key of keys.slice(0, -1)) {
      if (typeof target[key] !== 'object' || target[key] === null) {
        target[key] = {};
      }
      target = target[key];
    }
    target[keys[keys.length - 1]] = value;
  }
  return result;
}

/** The cartesian axes a drawn chart has (from plotly's resolved layout). */
export function chartAxes(chart: HTMLElement): string[] {
  const full = (chart as any)._fullLayout ?? {};
  return Object.keys(full).filter(name => AXIS.test(name));
}
