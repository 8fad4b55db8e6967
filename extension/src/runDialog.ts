/**
 * "Run as experiment": a dialog prefilled from the notebook's `parameters` cell.
 *
 * The Run tab starts one run; the Sweep tab takes comma-separated values per parameter and
 * starts a grid sweep. Values are sent as typed text and the server types them from the
 * notebook's defaults, exactly as the CLI does, so the three shells agree on what "0.1" means.
 */
import { Dialog, Notification, showDialog } from '@jupyterlab/apputils';
import { Widget } from '@lumino/widgets';

import { IParameterSpec, IRunRow, errorText, postAPI, requestAPI } from './api';

export interface IRunRequest {
  mode: 'run' | 'sweep';
  experiment: string;
  params: Record<string, string>;
  grid: Record<string, string[]>;
  parallel: number | null;
}

function display(value: any): string {
  if (value === null || value === undefined) {
    return '';
  }
  return typeof value === 'string' ? value : JSON.stringify(value);
}

class RunDialogBody extends Widget implements Dialog.IBodyWidget<IRunRequest> {
  constructor(
    private parameters: Record<string, IParameterSpec>,
    experiment: string
  ) {
    super();
    this.addClass('wb-RunDialog');
    const tabs = document.createElement('div');
    tabs.className = 'wb-RunDialog-tabs';
    for (const mode of ['run', 'sweep'] as const) {
      const button = document.createElement('button');
      button.className = 'wb-RunDialog-tab jp-mod-styled';
      button.dataset.mode = mode;
      button.textContent = mode === 'run' ? 'Run' : 'Sweep';
      button.onclick = () => this.setMode(mode);
      tabs.appendChild(button);
    }
    this.node.appendChild(tabs);

    const form = document.createElement('div');
    form.className = 'wb-RunDialog-form';
    this.experimentInput = this.addField(form, 'experiment', 'Experiment', experiment, 'text');
    this.parallelInput = this.addField(form, 'parallel', 'Parallel runs', '1', 'number');
    this.parallelRow = this.parallelInput.parentElement as HTMLElement;
    const names = Object.keys(parameters);
    if (!names.length) {
      const note = document.createElement('p');
      note.className = 'wb-RunDialog-note';
      note.textContent =
        "This notebook has no cell tagged 'parameters': it runs with its own values.";
      form.appendChild(note);
    }
    for (const name of names) {
      const spec = parameters[name];
      const input = this.addField(form, `param-${name}`, `${name} (${spec.type})`, display(spec.default), 'text');
      input.dataset.param = name;
      input.title = spec.help || `default ${display(spec.default)}`;
      this.inputs[name] = input;
    }
    this.hint = document.createElement('p');
    this.hint.className = 'wb-RunDialog-note';
    form.appendChild(this.hint);
    this.node.appendChild(form);
    this.setMode('run');
  }

  private inputs: Record<string, HTMLInputElement> = {};
  private experimentInput: HTMLInputElement;
  private parallelInput: HTMLInputElement;
  private parallelRow: HTMLElement;
  private hint: HTMLElement;
  private mode: 'run' | 'sweep' = 'run';

  private addField(
    form: HTMLElement,
    name: string,
    label: string,
    value: string,
    type: string
  ): HTMLInputElement {
    const row = document.createElement('label');
    row.className = 'wb-RunDialog-row';
    const text = document.createElement('span');
    text.textContent = label;
    const input = document.createElement('input');
    input.className = 'jp-mod-styled';
    input.name = name;
    input.type = type;
    input.value = value;
    row.append(text, input);
    form.appendChild(row);
    return input;
  }

  setMode(mode: 'run' | 'sweep'): void {
    this.mode = mode;
    this.node.dataset.mode = mode;
    this.node.querySelectorAll<HTMLElement>('.wb-RunDialog-tab').forEach(tab => {
      tab.classList.toggle('wb-mod-active', tab.dataset.mode === mode);
    });
    this.parallelRow.style.display = mode === 'sweep' ? '' : 'none';
    this.hint.textContent =
      mode === 'sweep'
        ? 'Give comma-separated values (e.g. 0.01, 0.1, 1): every combination becomes one run.'
        : 'Values are typed like the defaults in the parameters cell.';
  }

  getValue(): IRunRequest {
    const params: Record<string, string> = {};
    const grid: Record<string, string[]> = {};
    for (const [name, input] of Object.entries(this.inputs)) {
      const text = input.value.trim();
      const original = display(this.parameters[name].default);
      if (this.mode === 'sweep' && text.includes(',') && this.parameters[name].type !== 'list') {
        grid[name] = text.split(',').map(v => v.trim()).filter(v => v !== '');
      } else if (text !== original) {
        params[name] = text;
      }
    }
    const parallel = parseInt(this.parallelInput.value, 10);
    return {
      mode: this.mode,
      experiment: this.experimentInput.value.trim(),
      params,
      grid,
      parallel: Number.isFinite(parallel) && parallel > 0 ? parallel : null
    };
  }
}

function defaultExperiment(path: string): string {
  const base = path.split('/').pop() ?? 'notebook';
  return base.replace(/\.ipynb$/, '').replace(/[^A-Za-z0-9_.-]+/g, '-') || 'default';
}

/** Ask for parameters and start a run or a sweep of the notebook at `path` (server-relative). */
export async function runAsExperiment(path: string, onStarted: () => void): Promise<void> {
  let parameters: Record<string, IParameterSpec>;
  try {
    const answer = await requestAPI<{ parameters: Record<string, IParameterSpec> }>(
      'notebooks/parameters',
      {},
      { path }
    );
    parameters = answer.parameters;
  } catch (error) {
    Notification.error(`Cannot read the parameters of ${path}: ${errorText(error)}`);
    return;
  }
  const body = new RunDialogBody(parameters, defaultExperiment(path));
  const result = await showDialog<IRunRequest>({
    title: `Run ${path} as an experiment`,
    body,
    buttons: [Dialog.cancelButton(), Dialog.okButton({ label: 'Start' })],
    focusNodeSelector: 'input'
  });
  if (!result.button.accept || !result.value) {
    return;
  }
  const request = result.value;
  try {
    if (request.mode === 'sweep') {
      if (!Object.keys(request.grid).length) {
        Notification.warning('A sweep needs at least one parameter with comma-separated values.');
        return;
      }
      const started = await postAPI<{ runs: number }>('sweeps', {
        notebook: path,
        grid: request.grid,
        params: request.params,
        parallel: request.parallel,
        experiment: request.experiment || null
      });
      Notification.success(`Sweep started: ${started.runs} runs of ${path}.`, { autoClose: 4000 });
    } else {
      const run = await postAPI<IRunRow>('runs', {
        notebook: path,
        params: request.params,
        experiment: request.experiment || null
      });
      Notification.success(`Run ${run.run_id} queued.`, { autoClose: 4000 });
    }
    onStarted();
  } catch (error) {
    Notification.error(`Could not start: ${errorText(error)}`);
  }
}
