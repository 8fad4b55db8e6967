/**
 * What the runs grid does with the mouse and keyboard: sorting from the headers, selecting and
 * opening runs, folding groups, tooltips with the full values, scrolling and copying.
 */
import { BasicMouseHandler, DataGrid } from '@lumino/datagrid';

import type { IGridHost } from './runsGrid';

/**
 * Clicks: a header sorts (its edges still resize), a row selects (ctrl/cmd toggles, shift
 * extends), the checkbox toggles, a group header folds, a double click opens the run.
 */
export class RunsMouseHandler extends BasicMouseHandler {
  constructor(private host: IGridHost) {
    super();
  }

  onMouseDown(grid: DataGrid, event: MouseEvent): void {
    const hit = grid.hitTest(event.clientX, event.clientY);
    if (hit.region === 'void' || event.button !== 0) {
      return;
    }
    grid.node.focus({ preventScroll: true });
    if (hit.region === 'column-header' || hit.region === 'corner-header') {
      const edge = (hit.column > 0 && hit.x <= 5) || hit.width - hit.x <= 6;
      if (edge || hit.row === 0) {
        super.onMouseDown(grid, event); // a resize handle
        return;
      }
      if (hit.region === 'corner-header') {
        if (hit.column === 1) {
          this.host.sortBy('run_id', 'text');
        }
        return;
      }
      const spec = this.host.columns[hit.column];
      this.host.sortBy(spec.key, spec.kind);
      return;
    }
    if (this.host.view.rows[hit.row] < 0) {
      this.host.toggleGroup(hit.row);
      return;
    }
    const toggle = event.ctrlKey || event.metaKey || (hit.region === 'row-header' && hit.column === 0);
    this.host.clickRow(hit.row, event.shiftKey ? 'range' : toggle ? 'toggle' : 'only');
  }

  onMouseDoubleClick(grid: DataGrid, event: MouseEvent): void {
    const hit = grid.hitTest(event.clientX, event.clientY);
    if ((hit.region === 'body' || hit.region === 'row-header') && this.host.view.rows[hit.row] >= 0) {
      this.host.openRow(hit.row);
    }
  }

  onContextMenu(grid: DataGrid, event: MouseEvent): void {
    const hit = grid.hitTest(event.clientX, event.clientY);
    const item = this.host.view.rows[hit.row];
    if ((hit.region === 'body' || hit.region === 'row-header') && item >= 0 && !this.host.isSelected(item)) {
      this.host.clickRow(hit.row, 'only'); // the lab's context menu then acts on this run
    }
  }

  /** The full run id, the whole value of a cut-off cell, or a column's full name, as a tooltip. */
  onMouseHover(grid: DataGrid, event: MouseEvent): void {
    super.onMouseHover(grid, event);
    const hit = grid.hitTest(event.clientX, event.clientY);
    const host = this.host;
    let tip = '';
    const item = hit.region === 'body' || hit.region === 'row-header' ? host.view.rows[hit.row] : -1;
    if (item >= 0 && hit.region === 'row-header') {
      tip = `${host.store.runIds[item]}\nDouble-click: open the executed notebook · Ctrl+C: copy the selected ids`;
    } else if (item >= 0) {
      const spec = host.columns[hit.column];
      const value = spec ? host.store.value(spec.key, item) : null;
      const text = value === null ? '' : typeof value === 'string' ? value : JSON.stringify(value);
      tip = spec ? `${spec.key}: ${text}` : ''; // the full value: cells show 4 significant digits
    } else if (hit.region === 'column-header' && hit.row === 1) {
      tip = `${host.columns[hit.column]?.key ?? ''}: click to sort`;
    }
    if (grid.node.title !== tip) {
      grid.node.title = tip;
    }
  }
}

/** Keys: arrows and pages scroll, Home/End jump, Ctrl/Cmd+A selects all, Ctrl/Cmd+C copies ids, Escape clears. */
export class RunsKeyHandler implements DataGrid.IKeyHandler {
  constructor(private host: IGridHost) {}

  isDisposed = false;

  dispose(): void {
    this.isDisposed = true;
  }

  onKeyDown(grid: DataGrid, event: KeyboardEvent): void {
    const accel = event.ctrlKey || event.metaKey;
    const key = event.key.length === 1 ? event.key.toLowerCase() : event.key;
    const actions: Record<string, () => void> = {
      ArrowDown: () => grid.scrollByStep('down'),
      ArrowUp: () => grid.scrollByStep('up'),
      ArrowLeft: () => grid.scrollByStep('left'),
      ArrowRight: () => grid.scrollByStep('right'),
      PageDown: () => grid.scrollByPage('down'),
      PageUp: () => grid.scrollByPage('up'),
      Home: () => grid.scrollTo(0, 0),
      End: () => grid.scrollTo(0, grid.maxScrollY),
      Escape: () => this.host.keyCommand('clear')
    };
    const action =
      accel && key === 'a'
        ? () => this.host.keyCommand('select-all')
        : accel && key === 'c'
          ? () => this.host.keyCommand('copy')
          : accel
            ? undefined
            : actions[key];
    if (action) {
      action();
      event.preventDefault();
      event.stopPropagation();
    }
  }
}

