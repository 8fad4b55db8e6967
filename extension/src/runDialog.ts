/**
 * "Run as experiment": a dialog prefilled from the notebook's `parameters` cell.
 *
 * The Run tab starts one run; the Sweep tab takes comma-separated values per parameter and
 * starts a grid sweep. Values are sent as typed text and the server types them from the
 * notebook's defaults, exactly as the CLI does, so the three shells agree on what "0.1" means.
 *
 * The dialog stays open until the server accepted the request: a refusal (a bad experiment name,
 * a value that is not a float, too many parallel runs) is shown under the field it is about.
 */
import { Notification } from '@jupyterlab/apputils';
import { Widget } from '@lumino/widgets';

import {
  IParameterSpec,
  IRunRow,
  WorkbenchAPIError,
  errorText,
  notifyError,
  postAPI,
  requestAPI
} from './api';
import { ActionDialog, IActionBody, clearError, errorBox, renderError } from './dialogs';

export interface IRunRequest {
  mode: 'run' | 'sweep';
  experiment: string;
  params: Record<string, string>;
  grid: Record<string, string[]>;
  parallel: number | null;
}

/** GET notebooks/parameters */
interface IRunForm {
  parameters: Record<string, IParameterSpec>;
  /** The notebook's own `wb.set_experiment(...)`, else a valid name derived from its file name. */
  default_experiment?: string;
}

function display(value: any): string {
  if (value === null || value === undefined) {
    return '';
  }
  return typeof value === 'string' ? value : JSON.stringify(value);
}

/** One labelled input with its own error line underneath. */
interface IField {
  input: HTMLInputElement;
  box: HTMLElement;
  error: HTMLElement;
}

class RunDialogBody extends Widget implements IActionBody<IRunRequest> {
  constructor(
    private parameters: Record<string, IParameterSpec>,
    experiment: string
  ) {
    super();
    this.addClass('wb-RunDialog');
    this.node.appendChild(this.tabs());
    const form = document.createElement('div');
    form.className = 'wb-RunDialog-form';
    this.experimentInput = this.addField(form, 'experiment', 'Experiment', experiment, 'text');
    // Text, not type=number: the lab's Dialog silently disables Start while any input is
    // :invalid (a number field holding "1e" or "0" with min=1), where the server's refusal
    // would say why under the field.
    // Empty: the library's default (one run per core, within the workspace's cap).
    this.parallelInput = this.addField(form, 'parallel', 'Parallel runs', '', 'text');
    this.parallelInput.inputMode = 'numeric';
    this.parallelInput.placeholder = 'one per core';
    this.parallelRow = this.fields.get('parallel')!.box;
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
      const input = this.addField(form, `params.${name}`, `${name} (${spec.type})`, display(spec.default), 'text');
      input.name = `param-${name}`;
      input.dataset.param = name;
      input.title = spec.help || `default ${display(spec.default)}`;
      this.inputs[name] = input;
    }
    this.hint = document.createElement('p');
    this.hint.className = 'wb-RunDialog-note';
    form.appendChild(this.hint);
    this.general = errorBox();
    this.general.classList.add('wb-RunDialog-error');
    form.appendChild(this.general);
    this.node.appendChild(form);
    this.setMode('run');
  }

  private inputs: Record<string, HTMLInputElement> = {};
  /** Inputs by the server's field name: "experiment", "parallel", "params.<name>". */
  private fields = new Map<string, IField>();
  private experimentInput: HTMLInputElement;
  private parallelInput: HTMLInputElement;
  private parallelRow: HTMLElement;
  private hint: HTMLElement;
  /** Errors that are about no single field (or about a field this form does not show). */
  private general: HTMLElement;
  private mode: 'run' | 'sweep' = 'run';

  private tabs(): HTMLElement {
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
    return tabs;
  }

  private addField(
    form: HTMLElement,
    field: string,
    label: string,
    value: string,
    type: string
  ): HTMLInputElement {
    const box = document.createElement('div');
    box.className = 'wb-RunDialog-field';
    box.dataset.field = field;
    const row = document.createElement('label');
    row.className = 'wb-RunDialog-row';
    const text = document.createElement('span');
    text.textContent = label;
    const input = document.createElement('input');
    input.className = 'jp-mod-styled';
    input.name = field;
    input.type = type;
    input.value = value;
    row.append(text, input);
    const error = document.createElement('div');
    error.className = 'wb-RunDialog-fieldError';
    error.id = `wb-run-error-${field.replace(/[^A-Za-z0-9_-]/g, '_')}`;
    error.hidden = true;
    input.setAttribute('aria-describedby', error.id);
    // Editing the field is acting on its error: take the mark away (Start then retries).
    input.addEventListener('input', () => this.clearField(field));
    box.append(row, error);
    form.appendChild(box);
    this.fields.set(field, { input, box, error });
    return input;
  }

  private clearField(field: string): void {
    const entry = this.fields.get(field);
    if (entry) {
      entry.box.classList.remove('wb-mod-invalid');
      entry.input.removeAttribute('aria-invalid');
      entry.error.hidden = true;
      entry.error.textContent = '';
    }
    clearError(this.general);
  }

  clearErrors(): void {
    for (const field of this.fields.keys()) {
      this.clearField(field);
    }
  }

  showError(error: unknown): void {
    this.clearErrors();
    const field = error instanceof WorkbenchAPIError ? error.field : null;
    const entry = field ? this.fields.get(field) : undefined;
    if (!entry || entry.box.style.display === 'none') {
      renderError(this.general, error);
      return;
    }
    entry.box.classList.add('wb-mod-invalid');
    entry.input.setAttribute('aria-invalid', 'true');
    entry.error.textContent = errorText(error);
    entry.error.hidden = false;
    entry.error.setAttribute('role', 'alert');
    entry.input.focus();
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
    this.clearErrors();
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
    return {
      mode: this.mode,
      experiment: this.experimentInput.value.trim(),
      params,
      grid,
      parallel: this.parallel()
    };
  }

  /**
   * Runs at a time as typed: empty means the server's default (one per core); a number is sent
   * as is for the server to check (0, 2.5 or 10,000 are refused under the field, not silently
   * replaced by the default); NaN when the text is no number at all.
   */
  private parallel(): number | null {
    const text = this.parallelInput.value.trim();
    return text === '' ? null : Number(text);
  }
}

/** The name proposed when the server did not send one (an older server): legal by construction. */
function fallbackExperiment(path: string): string {
  const base = (path.split('/').pop() ?? '').replace(/\.ipynb$/, '');
  const cleaned = base.replace(/[^A-Za-z0-9_.-]+/g, '-').replace(/^[-_.]+|[-_.]+$/g, '');
  if (!cleaned) {
    return 'default';
  }
  return /^[A-Za-z]/.test(cleaned) ? cleaned : `nb-${cleaned}`;
}

/** POST the request; throws the server's refusal for the dialog to show. */
async function submit(path: string, request: IRunRequest): Promise<void> {
  if (request.mode === 'sweep') {
    if (request.parallel !== null && !Number.isFinite(request.parallel)) {
      throw new WorkbenchAPIError('Parallel runs must be a whole number of at least 1.', 400, null, 'parallel');
    }
    if (!Object.keys(request.grid).length) {
      throw new Error(
        'A sweep needs at least one parameter with comma-separated values (e.g. 0.01, 0.1).'
      );
    }
    const started = await postAPI<{ runs: number }>('sweeps', {
      notebook: path,
      grid: request.grid,
      params: request.params,
      parallel: request.parallel,
      experiment: request.experiment || null
    });
    Notification.success(`Sweep started: ${started.runs} runs of ${path}.`, { autoClose: 4000 });
    return;
  }
  // 201: the queued run; 202 from a lab on a team server, whose runs execute in the lab's process
  // and are listed once the server has their first events.
  const run = await postAPI<Partial<IRunRow> & { server?: string }>('runs', {
    notebook: path,
    params: request.params,
    experiment: request.experiment || null
  });
  const started = run.run_id
    ? `Run ${run.run_id} queued in experiment ${run.experiment}.`
    : `Run of ${path} started; it is logged to the team server ${run.server}.`;
  Notification.success(started, { autoClose: 4000 });
}

/** Ask for parameters and start a run or a sweep of the notebook at `path` (server-relative). */
export async function runAsExperiment(path: string, onStarted: () => void): Promise<void> {
  let form: IRunForm;
  try {
    form = await requestAPI<IRunForm>('notebooks/parameters', {}, { path });
  } catch (error) {
    notifyError(`Cannot run ${path} as an experiment: ${errorText(error)}`);
    return;
  }
  const body = new RunDialogBody(
    form.parameters,
    form.default_experiment || fallbackExperiment(path)
  );
  const dialog = new ActionDialog<IRunRequest>({
    title: `Run ${path} as an experiment`,
    body,
    acceptLabel: 'Start',
    focusNodeSelector: 'input',
    action: request => submit(path, request)
  });
  const result = await dialog.launch();
  if (result.button.accept) {
    onStarted();
  }
}
