/**
 * A read-only view of a run's executed notebook.
 *
 * The notebook lives in the workspace's content-addressed store, not in the Jupyter contents
 * tree, so it is fetched as JSON and rendered cell by cell with JupyterLab's own renderers
 * (markdown and rich outputs through the rendermime registry). Nothing here can edit or save:
 * an executed run is a record, not a document.
 */
import { MainAreaWidget } from '@jupyterlab/apputils';
import { OutputArea, OutputAreaModel } from '@jupyterlab/outputarea';
import { IRenderMimeRegistry } from '@jupyterlab/rendermime';
import { Panel, Widget } from '@lumino/widgets';

import { errorText, requestAPI } from './api';
import { workbenchIcon } from './icons';

function sourceText(source: string | string[] | undefined): string {
  return Array.isArray(source) ? source.join('') : (source ?? '');
}

export class ExecutedNotebookView extends Panel {
  constructor(
    readonly runId: string,
    private rendermime: IRenderMimeRegistry
  ) {
    super();
    this.addClass('wb-NotebookView');
    this.status = new Widget();
    this.status.node.textContent = 'Loading the executed notebook…';
    this.addWidget(this.status);
    void this.load();
  }

  private async load(): Promise<void> {
    let nb: any;
    try {
      nb = await requestAPI<any>(`runs/${encodeURIComponent(this.runId)}/notebook`);
    } catch (error) {
      this.status.node.textContent = `Cannot show this run's notebook: ${errorText(error)}`;
      return;
    }
    this.status.addClass('wb-NotebookView-banner');
    this.status.node.textContent = `Executed notebook of run ${this.runId} (read-only)`;
    for (const cell of nb.cells ?? []) {
      this.addWidget(await this.renderCell(cell));
    }
  }

  private status: Widget;

  private async renderCell(cell: any): Promise<Widget> {
    const box = new Panel();
    box.addClass('wb-NotebookView-cell');
    box.addClass(`wb-mod-${cell.cell_type}`);
    const source = sourceText(cell.source);
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
    const input = document.createElement('div');
    input.className = 'wb-NotebookView-input';
    const prompt = document.createElement('div');
    prompt.className = 'wb-NotebookView-prompt';
    prompt.textContent =
      cell.cell_type === 'code' ? `[${cell.execution_count ?? ' '}]:` : '';
    const pre = document.createElement('pre');
    pre.textContent = source;
    input.append(prompt, pre);
    box.addWidget(new Widget({ node: input }));
    const tags: string[] = cell.metadata?.tags ?? [];
    if (tags.length) {
      box.node.dataset.tags = tags.join(' ');
    }
    if (cell.cell_type === 'code' && (cell.outputs ?? []).length) {
      const model = new OutputAreaModel({ values: cell.outputs, trusted: false });
      const area = new OutputArea({ model, rendermime: this.rendermime });
      area.addClass('wb-NotebookView-outputs');
      box.addWidget(area);
    }
    return box;
  }
}

export function openExecutedNotebook(
  runId: string,
  rendermime: IRenderMimeRegistry,
  open: (widget: MainAreaWidget) => void
): MainAreaWidget {
  const content = new ExecutedNotebookView(runId, rendermime);
  const widget = new MainAreaWidget({ content });
  widget.id = `workbench-run-notebook-${runId}`;
  widget.title.label = `Run ${runId}`;
  widget.title.caption = `Executed notebook of run ${runId} (read-only)`;
  widget.title.icon = workbenchIcon;
  widget.title.closable = true;
  open(widget);
  return widget;
}
