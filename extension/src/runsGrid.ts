/**
 * The runs table's grid: a `@lumino/datagrid` DataGrid (the virtualised canvas grid of
 * JupyterLab's CSV viewer) over the view of `runsTableData`, with its colours read from the
 * JupyterLab theme, a checkbox and short run id frozen at the left of every row, two header rows
 * (Run / Parameters / Metrics bands over the column names), clickable headers that sort and
 * group rows that fold.
 *
 * Painting (theme colours, renderers) is in runsGridPaint.ts, mouse and keys in runsGridInput.ts.
 */
import { CellGroup, DataGrid, DataModel } from '@lumino/datagrid';
import { MessageLoop } from '@lumino/messaging';

import { RunsKeyHandler, RunsMouseHandler } from './runsGridInput';
import { IGridColors, batchCellBlits, gridStyle, readColors, renderers } from './runsGridPaint';
import { ColumnKind, IColumnSpec, IView, SECTION_LABELS, formatCell, shortId, RunsStore } from './runsTableData';

/** What the grid asks of the table it belongs to. */
export interface IGridHost {
  readonly store: RunsStore;
  readonly view: IView;
  readonly columns: IColumnSpec[];
  readonly sortKey: string;
  readonly descending: boolean;
  isSelected(row: number): boolean;
  sortBy(key: string, kind: ColumnKind): void;
  clickRow(viewRow: number, mode: 'only' | 'toggle' | 'range'): void;
  toggleGroup(viewRow: number): void;
  openRow(viewRow: number): void;
  keyCommand(command: 'select-all' | 'clear' | 'copy'): void;
}

const GROUP_META = { group: true };
const NO_META = {};

/** The DataModel the grid reads: every call maps a view row to a store row on the fly. */
export class RunsGridModel extends DataModel {
  constructor(private host: IGridHost) {
    super();
  }

  private meta: DataModel.Metadata[] = [];
  private bands: CellGroup[] = [];
  /** Report no rows (while columns are resized: each resize repaints everything shown). */
  rowsHidden = false;

  /** Re-read columns and view (after a load, a sort, a grouping or a column change). */
  reset(): void {
    this.meta = this.host.columns.map(column => ({
      kind: column.kind,
      align: column.kind === 'number' || column.kind === 'duration' || column.kind === 'value' ? 'right' : 'left'
    }));
    this.bands = [];
    this.host.columns.forEach((column, index) => {
      const last = this.bands[this.bands.length - 1];
      if (last && this.host.columns[last.c1].section === column.section) {
        last.c2 = index;
      } else {
        this.bands.push({ r1: 0, r2: 0, c1: index, c2: index });
      }
    });
    this.emitChanged({ type: 'model-reset' });
  }

  rowCount(region: DataModel.RowRegion): number {
    return region === 'body' ? (this.rowsHidden ? 0 : this.host.view.rows.length) : 2;
  }

  columnCount(region: DataModel.ColumnRegion): number {
    return region === 'body' ? this.host.columns.length : 2;
  }

  data(region: DataModel.CellRegion, row: number, column: number): any {
    const host = this.host;
    if (region === 'column-header') {
      const spec = host.columns[column];
      if (row === 0) {
        return SECTION_LABELS[spec.section];
      }
      return spec.key === host.sortKey ? `${spec.label} ${host.descending ? '▼' : '▲'}` : spec.label;
    }
    if (region === 'corner-header') {
      if (row === 0 || column === 0) {
        return '';
      }
      return host.sortKey === 'run_id' ? `run ${host.descending ? '▼' : '▲'}` : 'run';
    }
    const item = host.view.rows[row];
    if (item < 0) {
      const group = host.view.groups[-item - 1];
      return region === 'body' ? group.label : column === 0 ? (group.collapsed ? '▸' : '▾') : '';
    }
    if (region === 'row-header') {
      return column === 0 ? host.isSelected(item) : shortId(host.store.runIds[item] ?? '');
    }
    const spec = host.columns[column];
    return formatCell(spec.kind, host.store.value(spec.key, item));
  }

  metadata(region: DataModel.CellRegion, row: number, column: number): DataModel.Metadata {
    if (region === 'body' || region === 'row-header') {
      if (this.host.view.rows[row] < 0) {
        return GROUP_META;
      }
      return region === 'body' ? this.meta[column] ?? NO_META : NO_META;
    }
    return NO_META;
  }

  groupCount(region: DataModel.CellRegion): number {
    return region === 'column-header' ? this.bands.length : 0;
  }

  group(region: DataModel.CellRegion, index: number): CellGroup | null {
    return region === 'column-header' ? this.bands[index] ?? null : null;
  }
}

export class RunsGrid extends DataGrid {
  constructor(private host: IGridHost) {
    super({
      defaultSizes: { rowHeight: 24, columnWidth: 96, rowHeaderWidth: 64, columnHeaderHeight: 22 },
      headerVisibility: 'all'
    });
    this.addClass('wb-RunsTable-grid');
    this.node.tabIndex = 0;
    this.model = new RunsGridModel(host);
    this.dataModel = this.model;
    this.mouseHandler = new RunsMouseHandler(host);
    this.keyHandler = new RunsKeyHandler(host);
    batchCellBlits(this);
    this.restyle();
  }

  readonly model: RunsGridModel;
  /** The colours in use (the browser tests compare them with the theme's variables). */
  colors: IGridColors = readColors();

  /** Take the current theme's colours (after a theme change). */
  restyle(): void {
    this.colors = readColors();
    this.cellRenderers = renderers(this, this.colors);
    this.style = gridStyle(this.colors, this.host);
  }

  /**
   * Where a cell is on the page (client coordinates of its centre), scrolled into view: `column`
   * is a body column, `'run'` (the short id) or `'check'` (the checkbox); `viewRow` -1 is the
   * header row of column names. For the browser tests, which click the canvas like a user.
   */
  cellPoint(viewRow: number, column: number | 'run' | 'check'): { x: number; y: number } {
    if (typeof column === 'number') {
      this.scrollToColumn(column);
    }
    if (viewRow >= 0) {
      this.scrollToRow(viewRow);
    }
    MessageLoop.flush(); // scrolling posts messages: let them move the grid before measuring
    const box = this.viewport.node.getBoundingClientRect();
    const x =
      typeof column === 'number'
        ? this.headerWidth + this.columnOffset('body', column) - this.scrollX + this.columnSize('body', column) / 2
        : this.columnOffset('row-header', column === 'check' ? 0 : 1) +
          this.columnSize('row-header', column === 'check' ? 0 : 1) / 2;
    const y =
      viewRow < 0
        ? this.rowOffset('column-header', 1) + this.rowSize('column-header', 1) / 2
        : this.headerHeight + this.rowOffset('body', viewRow) - this.scrollY + this.rowSize('body', viewRow) / 2;
    return { x: box.left + x, y: box.top + y };
  }

  /** Repaint everything, e.g. after the selection changed (the row tints come from the style). */
  repaint(): void {
    this.repaintContent();
  }

  private paintedScrollX = 0;

  /**
   * A sideways scroll moves the painted pixels and paints only the uncovered columns: group
   * labels, kept at the left edge, are painted again in full.
   */
  protected paintContent(rx: number, ry: number, rw: number, rh: number): void {
    super.paintContent(rx, ry, rw, rh);
    if (this.scrollX === this.paintedScrollX) {
      return;
    }
    this.paintedScrollX = this.scrollX;
    const rows = this.host.view.rows;
    if (!this.host.view.groups.length) {
      return;
    }
    const first = Math.max(0, this.rowAt('body', this.scrollY));
    const last = this.rowAt('body', this.scrollY + this.pageHeight);
    const columns = this.columnCount('body');
    for (let row = first; row <= (last < 0 ? rows.length - 1 : last); row++) {
      if (rows[row] < 0) {
        this.repaintRegion('body', row, 0, row, columns - 1);
      }
    }
  }

  /** The keys of the columns shown since the last reload, in order. */
  private shown: string[] = [];

  /**
   * Re-read columns and rows. Widths are kept by column key (the grid keeps them by position,
   * which changes when a column is shown or hidden); new columns get their default width.
   */
  reload(widths: Map<string, number>): void {
    this.shown.forEach((key, index) => widths.set(key, this.columnSize('body', index)));
    this.shown = this.host.columns.map(column => column.key);
    // Each resize repaints all the cells right of the column: with the rows hidden meanwhile,
    // that is only the header, and the rows are painted once, at the end.
    const sizes: [DataModel.ColumnRegion, number, number][] = [
      ['row-header', 0, 28],
      ['row-header', 1, 80],
      ...this.host.columns.map((column, index): [DataModel.ColumnRegion, number, number] => [
        'body',
        index,
        widths.get(column.key) ?? column.width
      ])
    ];
    this.model.rowsHidden = true;
    this.model.reset();
    let resized = false;
    for (const [region, index, size] of sizes) {
      if (this.columnSize(region, index) !== size) {
        this.resizeColumn(region, index, size);
        resized = true;
      }
    }
    if (resized) {
      MessageLoop.flush(); // resizes are posted messages: apply them before the rows come back
    }
    this.model.rowsHidden = false;
    this.model.reset();
  }
}
