/**
 * How the runs grid paints: colours and fonts from the JupyterLab theme (the grid draws on a
 * canvas, which CSS cannot reach, so the theme's CSS variables are resolved here and again after
 * a theme change), the cell renderers of each region, and a cheaper way to copy painted cells to
 * the screen where canvases are drawn in software.
 */
import { CellRenderer, DataGrid, GraphicsContext, RendererMap, TextRenderer } from '@lumino/datagrid';

import type { IGridHost } from './runsGrid';
import { themeColor } from './theme';

/** The theme's colours (as `rgb(...)`) and fonts the grid paints with. */
export interface IGridColors {
  background: string;
  stripe: string;
  text: string;
  muted: string;
  header: string;
  headerText: string;
  line: string;
  selection: string;
  group: string;
  brand: string;
  success: string;
  error: string;
  warn: string;
  font: string;
  boldFont: string;
}

/** `rgb(r, g, b)` as `rgba(r, g, b, alpha)`: a see-through tint of a theme colour. */
function withAlpha(rgb: string, alpha: number): string {
  const parts = rgb.match(/[\d.]+/g);
  return parts && parts.length >= 3 ? `rgba(${parts[0]}, ${parts[1]}, ${parts[2]}, ${alpha})` : rgb;
}

/** Resolve the current theme's variables (call again after a theme change). */
export function readColors(): IGridColors {
  const style = getComputedStyle(document.body);
  const size = style.getPropertyValue('--jp-ui-font-size1').trim() || '13px';
  const family = style.getPropertyValue('--jp-ui-font-family').trim() || 'sans-serif';
  const brand = themeColor('--jp-brand-color1', 'rgb(25, 118, 210)');
  return {
    background: themeColor('--jp-layout-color0', 'rgb(255, 255, 255)'),
    stripe: themeColor('--jp-layout-color1', 'rgb(255, 255, 255)'),
    text: themeColor('--jp-ui-font-color1', 'rgb(0, 0, 0)'),
    muted: themeColor('--jp-ui-font-color2', 'rgb(97, 97, 97)'),
    header: themeColor('--jp-layout-color2', 'rgb(238, 238, 238)'),
    headerText: themeColor('--jp-ui-font-color0', 'rgb(0, 0, 0)'),
    line: themeColor('--jp-border-color2', 'rgb(224, 224, 224)'),
    selection: withAlpha(brand, 0.3),
    group: themeColor('--jp-layout-color3', 'rgb(189, 189, 189)'),
    brand,
    success: themeColor('--jp-success-color1', 'rgb(56, 142, 60)'),
    error: themeColor('--jp-error-color1', 'rgb(211, 47, 47)'),
    warn: themeColor('--jp-warn-color1', 'rgb(245, 124, 0)'),
    font: `${size} ${family}`,
    boldFont: `600 ${size} ${family}`
  };
}

/** What the grid asks of the table it belongs to. */
/**
 * A group's header row: its label painted across all columns (each cell paints its slice),
 * starting at the left edge of the visible columns so it stays in sight when scrolled sideways.
 */
class GroupRenderer extends CellRenderer {
  constructor(
    private grid: DataGrid,
    private colors: IGridColors
  ) {
    super();
  }

  paint(gc: GraphicsContext, config: CellRenderer.CellConfig): void {
    const { x, y, width, height } = config;
    gc.fillStyle = this.colors.header;
    gc.fillRect(x, y, width, height);
    const rowStart = Math.max(config.x - this.grid.columnOffset('body', config.column), this.grid.headerWidth);
    gc.beginPath();
    gc.rect(x, y, width, height);
    gc.clip();
    gc.font = this.colors.boldFont;
    gc.fillStyle = this.colors.headerText;
    gc.textAlign = 'left';
    gc.textBaseline = 'bottom';
    gc.fillText(String(config.value ?? ''), rowStart + 8, y + height / 2 + 7);
  }
}

/** The row's checkbox (a drawn box: no font glyph needed), or a group's fold arrow. */
class CheckboxRenderer extends CellRenderer {
  constructor(private colors: IGridColors) {
    super();
  }

  paint(gc: GraphicsContext, config: CellRenderer.CellConfig): void {
    const { x, y, width, height, value } = config;
    if (typeof value === 'string') {
      gc.fillStyle = this.colors.header;
      gc.fillRect(x, y, width, height);
      gc.font = this.colors.boldFont;
      gc.fillStyle = this.colors.headerText;
      gc.textAlign = 'center';
      gc.textBaseline = 'middle';
      gc.fillText(value, x + width / 2, y + height / 2);
      return;
    }
    const size = 12;
    const left = Math.round(x + (width - size) / 2) + 0.5;
    const top = Math.round(y + (height - size) / 2) + 0.5;
    gc.lineWidth = 1;
    if (value) {
      gc.fillStyle = this.colors.brand;
      gc.fillRect(left, top, size, size);
      gc.strokeStyle = this.colors.background;
      gc.lineWidth = 2;
      gc.beginPath();
      gc.moveTo(left + 2.5, top + 6);
      gc.lineTo(left + 5, top + 8.5);
      gc.lineTo(left + 9.5, top + 3.5);
      gc.stroke();
    } else {
      gc.strokeStyle = this.colors.muted;
      gc.strokeRect(left, top, size, size);
    }
  }
}

/** Text colour of a status cell: the theme's success / error / warning / brand colours. */
function statusColor(colors: IGridColors, status: string): string {
  switch (status) {
    case 'finished':
      return colors.success;
    case 'failed':
      return colors.error;
    case 'killed':
      return colors.warn;
    case 'queued':
    case 'running':
      return colors.brand;
    default:
      return colors.text;
  }
}

/** The renderers of every region, in the theme's colours. */
export function renderers(grid: DataGrid, colors: IGridColors): RendererMap {
  const text = new TextRenderer({
    font: colors.font,
    textColor: config => (config.metadata.kind === 'status' ? statusColor(colors, config.value) : colors.text),
    horizontalAlignment: config => config.metadata.align ?? 'left',
    horizontalPadding: 6
  });
  const header = new TextRenderer({
    font: colors.boldFont,
    textColor: colors.headerText,
    horizontalPadding: 6
  });
  const id = new TextRenderer({ font: colors.font, textColor: colors.muted, horizontalPadding: 6 });
  const group = new GroupRenderer(grid, colors);
  const check = new CheckboxRenderer(colors);
  return new RendererMap(
    {
      body: config => (config.metadata.group ? group : text),
      'row-header': config => (config.column === 0 || config.metadata.group ? check : id),
      'column-header': header,
      'corner-header': header
    },
    text
  );
}

/** The grid's own style: backgrounds, lines, header; selected rows tinted with the brand colour. */
export function gridStyle(colors: IGridColors, host: IGridHost): DataGrid.Style {
  return {
    ...DataGrid.defaultStyle,
    voidColor: colors.background,
    backgroundColor: colors.background,
    rowBackgroundColor: (row: number) => {
      const item = host.view.rows[row];
      if (item >= 0 && host.isSelected(item)) {
        return colors.selection;
      }
      return row % 2 ? colors.stripe : colors.background;
    },
    gridLineColor: colors.line,
    verticalGridLineColor: 'rgba(0, 0, 0, 0)',
    horizontalGridLineColor: colors.line,
    headerBackgroundColor: colors.header,
    headerGridLineColor: colors.line,
    selectionFillColor: colors.selection,
    selectionBorderColor: colors.brand,
    cursorBorderColor: colors.brand,
    headerSelectionFillColor: colors.selection,
    headerSelectionBorderColor: colors.brand,
    scrollShadow: {
      size: 6,
      color1: withAlpha(colors.text, 0.12),
      color2: withAlpha(colors.text, 0.04),
      color3: withAlpha(colors.text, 0)
    }
  };
}

/**
 * Make the grid's painting cheap where canvases are drawn in software (no GPU: headless
 * browsers, many VMs and remote desktops).
 *
 * The DataGrid paints each cell into an off-screen buffer and copies it to the screen canvas at
 * once, one `drawImage` per cell. In software rendering every copy from a canvas that was drawn
 * on since the last copy snapshots that whole canvas first: ~1 ms per cell, most of a second for
 * a screenful. Within one region's cells nothing else draws on the screen canvas, so the copies
 * of the cells of one column, top to bottom, are merged into one: the same pixels, one copy per
 * column. Uses two private methods of @lumino/datagrid 2.x; without them, painting is unchanged.
 */
export function batchCellBlits(grid: DataGrid): void {
  const target = grid as any;
  if (typeof target._blitContent !== 'function' || typeof target._drawCells !== 'function') {
    return;
  }
  const blit = target._blitContent.bind(grid);
  const drawCells = target._drawCells.bind(grid);
  let batching = false;
  let pending: [CanvasImageSource, number, number, number, number] | null = null;
  const flush = () => {
    if (pending) {
      const [source, x, y, w, h] = pending;
      pending = null;
      blit(source, x, y, w, h, x, y);
    }
  };
  type Blit = (source: CanvasImageSource, x: number, y: number, w: number, h: number, dx: number, dy: number) => void;
  const batched: Blit = (source, x, y, w, h, dx, dy) => {
    if (!batching || x !== dx || y !== dy) {
      flush();
      blit(source, x, y, w, h, dx, dy);
    } else if (pending?.[0] === source && pending[1] === x && pending[3] === w && pending[2] + pending[4] === y) {
      pending[4] += h; // the next cell down the same column
    } else {
      flush();
      pending = [source, x, y, w, h];
    }
  };
  target._blitContent = batched;

  target._drawCells = (region: unknown) => {
    batching = true;
    try {
      drawCells(region);
    } finally {
      flush();
      batching = false;
    }
  };
}

/** The DataGrid of the runs table, with its model, renderers, theme colours and mouse handler. */
