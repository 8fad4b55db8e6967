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
 * duration.
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

  private async load(): Promise<void> {
    const [run, nb] = await Promise.allSettled([
      requestAPI<IRunDetail>(`runs/${encodeURIComponent(this.runId)}`),
      requestAPI<any>(`runs/${encodeURIComponent(this.runId)}/notebook`)
    ]);
    this.header.node.textContent = '';
    if (run.status === 'fulfilled') {
      this.renderHeader(run.value);
    } else {
      this.header.node.appendChild(el('div', 'wb-Error', `Cannot read run ${this.runId}: ${errorText(run.reason)}`));
    }
    if (nb.status === 'rejected') {
      this.header.node.appendChild(el('div', 'wb-Muted', `No executed notebook to show: ${errorText(nb.reason)}`));
      return;
    }
    const banner = el('div', 'wb-NotebookView-banner', `Executed notebook of run ${this.runId} (read-only)`);
    this.header.node.appendChild(banner);
    await this.renderCells(nb.value, run.status === 'fulfilled' ? run.value : null);
  }

  private renderHeader(run: IRunDetail): void {
    const node = this.header.node;
    node.dataset.status = run.status;
    const title = el('div', 'wb-RunHeader-title');
    const notebook = run.notebook?.split('/').pop() ?? '';
    const about = el('span', 'wb-Muted', [run.experiment, notebook, formatDuration(run.duration_s)].filter(Boolean).join(' · '));
    about.title = run.notebook ?? '';
    title.append(el('span', `wb-Status wb-Status-${run.status}`, run.status), el('span', 'wb-RunHeader-id', run.run_id), about);
    node.appendChild(title);
    if (run.error) {
      node.appendChild(this.errorSection(run.error));
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

  private errorSection(error: NonNullable<IRunDetail['error']>): HTMLElement {
    const box = el('div', 'wb-RunHeader-error');
    box.setAttribute('role', 'alert');
    const name = error.ename ?? 'Error';
    box.appendChild(el('div', 'wb-RunHeader-exception', error.evalue ? `${name}: ${error.evalue}` : name));
    const where = el('div', 'wb-RunHeader-where');
    if (error.exec_count !== null && error.exec_count !== undefined) {
      const link = el('button', 'wb-Link', `in cell [${error.exec_count}]`);
      link.title = 'Scroll to the failing cell';
      link.onclick = () => this.failingCell?.scrollIntoView({ block: 'center' });
      where.appendChild(link);
    } else if (error.cell_index === null || error.cell_index === undefined) {
      where.textContent = 'before any cell ran (e.g. the kernel did not start or died)';
    }
    box.appendChild(where);
    const traceback = (error.traceback ?? []).map(line => line.replace(ANSI, '').replace(/\n$/, '')).join('\n');
    if (traceback.trim()) {
      const details = el('details', 'wb-RunHeader-traceback');
      details.open = true;
      details.append(el('summary', '', 'Traceback'), el('pre', '', traceback));
      box.appendChild(details);
    }
    return box;
  }

  private async renderCells(nb: any, run: IRunDetail | null): Promise<void> {
    const language = nb.metadata?.language_info?.name ?? nb.metadata?.kernelspec?.language ?? 'python';
    const cells: any[] = (nb.cells ?? []).filter(
      (cell: any) => !(cell.metadata?.tags ?? []).includes(PAPERMILL_ERROR_TAG)
    );
    const failedAt = this.failingIndex(cells, run);
    ensureHighlightStyle();
    for (const [index, cell] of cells.entries()) {
      const widget = await this.renderCell(cell, language);
      if (index === failedAt) {
        widget.addClass('wb-mod-failed');
        this.failingCell = widget.node;
      }
      this.addWidget(widget);
    }
  }

  /** The cell that raised: the one with an error output (its index survives papermill's marker cells). */
  private failingIndex(cells: any[], run: IRunDetail | null): number {
    const withError = cells.findIndex(cell =>
      (cell.outputs ?? []).some((output: any) => output.output_type === 'error')
    );
    if (withError >= 0 || !run?.error) {
      return withError;
    }
    const count = run.error.exec_count;
    return count === null || count === undefined ? -1 : cells.findIndex(cell => cell.execution_count === count);
  }

  private async renderCell(cell: any, language: string): Promise<Widget> {
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
    if (cell.cell_type === 'code' && (cell.outputs ?? []).length) {
      const model = new OutputAreaModel({ values: cell.outputs.map(normalizeOutput), trusted: false });
      const area = new OutputArea({ model, rendermime: this.rendermime });
      area.addClass('wb-NotebookView-outputs');
      box.addWidget(area);
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
