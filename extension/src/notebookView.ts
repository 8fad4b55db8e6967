/**
 * A read-only view of a run's executed notebook.
 *
 * The notebook lives in the workspace's content-addressed store, not in the Jupyter contents
 * tree, so it is fetched as JSON and rendered cell by cell with JupyterLab's own renderers
 * (markdown and rich outputs through the rendermime registry, code through the editor's language
 * registry for highlighting). Nothing here can edit or save: an executed run is a record, not a
 * document.
 *
 * A header says what the run was before the cells do: a failed run's exception, failing cell and
 * traceback (the first thing a person looks for); a finished run's params, key metrics and
 * duration. The traceback is shown once, there: the failing cell keeps its other outputs and,
 * in place of the traceback, a line that leads back to it.
 */
import { MainAreaWidget } from '@jupyterlab/apputils';
import { IEditorLanguageRegistry, jupyterHighlightStyle } from '@jupyterlab/codemirror';
import { OutputArea, OutputAreaModel } from '@jupyterlab/outputarea';
import { IRenderMimeRegistry } from '@jupyterlab/rendermime';
import { Panel, Widget } from '@lumino/widgets';

import { IRunDetail, errorText, requestAPI } from './api';
import { formatDuration, formatValue } from './format';
import { workbenchIcon } from './icons';
import { el } from './dom';

/** Metrics named in a finished run's header; the rest are one click away in Compare. */
const HEADER_METRICS = 6;
/** Papermill's "An exception was encountered" marker cell: the header says it better. */
const PAPERMILL_ERROR_TAG = 'papermill-error-cell-tag';
const ANSI = /\x1b\[[0-9;]*[A-Za-z]/g;

/** The cells the view shows: papermill's error marker cells left out (the header says it better). */
function visibleCells(nb: any): any[] {
  return (nb?.cells ?? []).filter((cell: any) => !(cell.metadata?.tags ?? []).includes(PAPERMILL_ERROR_TAG));
}

/** nbformat keeps multi-line text as a list of lines; one string is what renderers expect. */
function joinLines(value: string | string[] | undefined): string {
  return Array.isArray(value) ? value.join('') : (value ?? '');
}

/** Stream text and text mime data joined (the server normally sends them joined already). */
function normalizeOutput(output: any): any {
  if (output?.output_type === 'stream') {
    return { ...output, text: joinLines(output.text) };
  }
  if (output?.data && typeof output.data === 'object') {
    const data: Record<string, any> = {};
    for (const [mime, value] of Object.entries(output.data)) {
      const isJSON = mime === 'application/json' || mime.endsWith('+json');
      data[mime] = !isJSON && Array.isArray(value) ? value.join('') : value;
    }
    return { ...output, data };
  }
  return output;
}

/**
 * The highlighting classes of `IEditorLanguageRegistry.highlight` are CodeMirror-generated and
 * only get their CSS once an editor has been created; this view creates none (it is read-only),
 * so the rules are added once from the same style object.
 */
function ensureHighlightStyle(): void {
  const id = 'wb-highlight-style';
  if (document.getElementById(id)) {
    return;
  }
  const rules = jupyterHighlightStyle.module?.getRules();
  if (rules) {
    const style = document.createElement('style');
    style.id = id;
    style.textContent = rules;
    document.head.appendChild(style);
  }
}


/** A param as it was given (`0.1`, not the tables' four significant digits `0.1000`). */
function asGiven(value: any): string {
  return typeof value === 'number' ? String(value) : formatValue(value, '—');
}

/** `name = value` items, as chips. */
function keyValues(
  title: string,
  values: [string, any][],
  className: string,
  format: (value: any) => string
): HTMLElement {
  const row = el('div', `wb-RunHeader-row ${className}`);
  row.appendChild(el('span', 'wb-RunHeader-label', title));
  for (const [key, value] of values) {
    const chip = el('span', 'wb-RunHeader-chip');
    chip.append(el('span', 'wb-RunHeader-key', key), document.createTextNode(` = ${format(value)}`));
    row.appendChild(chip);
  }
  return row;
}

export class ExecutedNotebookView extends Panel {
  constructor(
    readonly runId: string,
    private rendermime: IRenderMimeRegistry,
    private languages: IEditorLanguageRegistry | null = null
  ) {
    super();
    this.addClass('wb-NotebookView');
    this.header = new Widget();
    this.header.addClass('wb-RunHeader');
    this.header.node.textContent = 'Loading the executed notebook…';
    this.addWidget(this.header);
    void this.load();
  }

  private header: Widget;
  private failingCell: HTMLElement | null = null;
  /** The header shows the run's traceback: the failing cell does not repeat it. */
  private tracebackInHeader = false;

  private async load(): Promise<void> {
    const [run, nb] = await Promise.allSettled([
      requestAPI<IRunDetail>(`runs/${encodeURIComponent(this.runId)}`),
      requestAPI<any>(`runs/${encodeURIComponent(this.runId)}/notebook`)
    ]);
    const detail = run.status === 'fulfilled' ? run.value : null;
    const cells: any[] = nb.status === 'fulfilled' ? visibleCells(nb.value) : [];
    const failedAt = this.failingIndex(cells, detail);
    this.header.node.textContent = '';
    if (detail) {
      this.renderHeader(detail, failedAt >= 0 ? cells[failedAt] : null);
    } else if (run.status === 'rejected') {
      this.header.node.appendChild(el('div', 'wb-Error', `Cannot read run ${this.runId}: ${errorText(run.reason)}`));
    }
    if (nb.status === 'rejected') {
      this.header.node.appendChild(el('div', 'wb-Muted', `No executed notebook to show: ${errorText(nb.reason)}`));
      return;
    }
    const banner = el('div', 'wb-NotebookView-banner', `Executed notebook of run ${this.runId} (read-only)`);
    this.header.node.appendChild(banner);
    await this.renderCells(nb.value, cells, failedAt);
  }

  private renderHeader(run: IRunDetail, failingCell: any | null): void {
    const node = this.header.node;
    node.dataset.status = run.status;
    const title = el('div', 'wb-RunHeader-title');
    const notebook = run.notebook?.split('/').pop() ?? '';
    const about = el('span', 'wb-Muted', [run.experiment, notebook, formatDuration(run.duration_s)].filter(Boolean).join(' · '));
    about.title = run.notebook ?? '';
    title.append(el('span', `wb-Status wb-Status-${run.status}`, run.status), el('span', 'wb-RunHeader-id', run.run_id), about);
    node.appendChild(title);
    if (run.error) {
      node.appendChild(this.errorSection(run.error, failingCell));
    }
    const params = Object.entries(run.params ?? {});
    if (params.length) {
      node.appendChild(keyValues('params', params, 'wb-RunHeader-params', asGiven));
    }
    const metrics = Object.entries(run.metrics ?? {}).slice(0, HEADER_METRICS);
    if (metrics.length) {
      node.appendChild(keyValues('metrics', metrics, 'wb-RunHeader-metrics', v => formatValue(v, '—')));
    }
  }

  /**
   * The exception (once: the traceback below it leaves out its own last line, the same text),
   * a link to the failing cell with the cell's first line, and the traceback.
   */
  private errorSection(error: NonNullable<IRunDetail['error']>, failingCell: any | null): HTMLElement {
    const box = el('div', 'wb-RunHeader-error');
    box.setAttribute('role', 'alert');
    const name = error.ename ?? 'Error';
    const exception = error.evalue ? `${name}: ${error.evalue}` : name;
    box.appendChild(el('div', 'wb-RunHeader-exception', exception));
    const where = el('div', 'wb-RunHeader-where');
    const count = error.exec_count ?? failingCell?.execution_count;
    if (count !== null && count !== undefined) {
      const link = el('button', 'wb-Link', `in cell [${count}]`);
      link.type = 'button';
      link.title = 'Scroll to the failing cell';
      link.onclick = () => this.revealFailingCell();
      where.appendChild(link);
      const firstLine = joinLines(failingCell?.source).split('\n').find(line => line.trim()) ?? '';
      if (firstLine) {
        const code = el('code', 'wb-RunHeader-cellLine', firstLine.length > 80 ? `${firstLine.slice(0, 79)}…` : firstLine);
        code.title = joinLines(failingCell?.source);
        where.append(document.createTextNode(' '), code);
      }
    } else if (error.cell_index === null || error.cell_index === undefined) {
      where.textContent = 'before any cell ran (e.g. the kernel did not start or died)';
    }
    box.appendChild(where);
    const lines = (error.traceback ?? []).map(line => line.replace(ANSI, '').replace(/\n$/, ''));
    if (lines.length > 1 && lines[lines.length - 1].trim() === exception.trim()) {
      lines.pop(); // the exception line, shown just above
    }
    const traceback = lines.join('\n');
    if (traceback.trim()) {
      const details = el('details', 'wb-RunHeader-traceback');
      details.open = true;
      details.append(el('summary', '', 'Traceback'), el('pre', '', traceback));
      box.appendChild(details);
      this.tracebackInHeader = true;
    }
    return box;
  }

  /** Scroll to the failing cell and flash its marker so the eye finds it. */
  private revealFailingCell(): void {
    const cell = this.failingCell;
    if (!cell) {
      return;
    }
    cell.scrollIntoView({ block: 'center' });
    cell.animate?.(
      [{ backgroundColor: 'var(--wb-tint-error)' }, { backgroundColor: 'transparent' }],
      { duration: 1200, easing: 'ease-out' }
    );
  }

  private async renderCells(nb: any, cells: any[], failedAt: number): Promise<void> {
    const language = nb.metadata?.language_info?.name ?? nb.metadata?.kernelspec?.language ?? 'python';
    ensureHighlightStyle();
    for (const [index, cell] of cells.entries()) {
      const failed = index === failedAt;
      const widget = await this.renderCell(cell, language, failed && this.tracebackInHeader);
      if (failed) {
        widget.addClass('wb-mod-failed');
        this.failingCell = widget.node;
      }
      this.addWidget(widget);
    }
  }

  /** In the failing cell, in place of the traceback the header shows: what was raised, and a way back up. */
  private errorNote(outputs: any[]): HTMLElement {
    const error = outputs.find(output => output?.output_type === 'error');
    const note = el('div', 'wb-Error wb-NotebookView-errorNote');
    note.appendChild(document.createTextNode(`✗ ${error?.ename ?? 'An exception'} was raised in this cell · `));
    const link = el('button', 'wb-Link', 'traceback at the top');
    link.type = 'button';
    link.title = 'Scroll to the error and its traceback';
    link.onclick = () => this.header.node.scrollIntoView({ block: 'start' });
    note.appendChild(link);
    return note;
  }

  /**
   * The cell that raised: the run's failing cell by execution count, else the one with an error
   * output (indexes counted without papermill's marker cells). None for a run that did not fail.
   */
  private failingIndex(cells: any[], run: IRunDetail | null): number {
    if (run && !run.error) {
      return -1;
    }
    const count = run?.error?.exec_count;
    const byCount = count === null || count === undefined ? -1 : cells.findIndex(cell => cell.execution_count === count);
    if (byCount >= 0) {
      return byCount;
    }
    return cells.findIndex(cell => (cell.outputs ?? []).some((output: any) => output.output_type === 'error'));
  }

  private async renderCell(cell: any, language: string, tracebackShownAbove = false): Promise<Widget> {
    const box = new Panel();
    box.addClass('wb-NotebookView-cell');
    box.addClass(`wb-mod-${cell.cell_type}`);
    const source = joinLines(cell.source);
    if (cell.cell_type === 'markdown') {
      const renderer = this.rendermime.createRenderer('text/markdown');
      const model = this.rendermime.createModel({
        data: { 'text/markdown': source },
        trusted: false
      });
      await renderer.renderModel(model);
      box.addWidget(renderer);
      return box;
    }
    const input = el('div', 'wb-NotebookView-input');
    const prompt = el('div', 'wb-NotebookView-prompt', cell.cell_type === 'code' ? `[${cell.execution_count ?? ' '}]:` : '');
    const pre = el('pre', 'wb-NotebookView-source');
    await this.highlight(pre, source, cell.cell_type === 'code' ? language : null);
    input.append(prompt, pre);
    box.addWidget(new Widget({ node: input }));
    const tags: string[] = cell.metadata?.tags ?? [];
    if (tags.length) {
      box.node.dataset.tags = tags.join(' ');
    }
    const outputs: any[] = cell.cell_type === 'code' ? cell.outputs ?? [] : [];
    const shown = tracebackShownAbove ? outputs.filter(output => output?.output_type !== 'error') : outputs;
    if (shown.length) {
      const model = new OutputAreaModel({ values: shown.map(normalizeOutput), trusted: false });
      const area = new OutputArea({ model, rendermime: this.rendermime });
      area.addClass('wb-NotebookView-outputs');
      box.addWidget(area);
    }
    if (tracebackShownAbove) {
      box.addWidget(new Widget({ node: this.errorNote(outputs) }));
    }
    return box;
  }

  /** Code coloured by the lab's own language registry (plain text when it is not available). */
  private async highlight(pre: HTMLElement, source: string, language: string | null): Promise<void> {
    const spec = language && this.languages ? this.languages.findBest(language) : null;
    if (!spec || !this.languages) {
      pre.textContent = source;
      return;
    }
    try {
      pre.classList.add('cm-s-jupyter');
      await this.languages.highlight(source, spec, pre);
    } catch {
      pre.textContent = source; // a language that fails to load: the text is what matters
    }
  }
}

export function openExecutedNotebook(
  runId: string,
  rendermime: IRenderMimeRegistry,
  languages: IEditorLanguageRegistry | null,
  open: (widget: MainAreaWidget) => void
): MainAreaWidget {
  const content = new ExecutedNotebookView(runId, rendermime, languages);
  const widget = new MainAreaWidget({ content });
  widget.id = `workbench-run-notebook-${runId}`;
  widget.title.label = `Run ${runId}`;
  widget.title.caption = `Executed notebook of run ${runId} (read-only)`;
  widget.title.icon = workbenchIcon;
  widget.title.closable = true;
  open(widget);
  return widget;
}
