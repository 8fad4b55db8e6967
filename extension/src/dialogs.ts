/**
 * Dialogs that act, and explain a refusal where the user acted.
 *
 * JupyterLab's Dialog closes on any button, so a refused request (a bad parameter value, a model
 * gate) would leave the user with a closed dialog and, at best, a count on the notification bell.
 * `ActionDialog` runs its action when the accept button is pressed and only closes once the
 * action succeeded; a refusal is shown in the dialog's body, next to the field it is about.
 */
import { Dialog } from '@jupyterlab/apputils';
import { Widget } from '@lumino/widgets';

import { IGateResult, WorkbenchAPIError, errorText, notifyError } from './api';
import { el } from './dom';

/** A dialog body whose value feeds an action, and that can show why the action was refused. */
export interface IActionBody<T> extends Widget {
  getValue(): T;
  /** Show the refusal in place (the offending field marked when the body has it). */
  showError(error: unknown): void;
  clearErrors(): void;
}


/**
 * Fill `box` with an error: the message, each gate's verdict of a refused promotion (failed
 * first), and the hint. `box` is made visible; `clearError` hides it again.
 */
export function renderError(box: HTMLElement, error: unknown): void {
  box.textContent = '';
  box.hidden = false;
  box.setAttribute('role', 'alert');
  const apiError = error instanceof WorkbenchAPIError ? error : null;
  const gates = apiError?.gates ?? [];
  if (!gates.length) {
    box.appendChild(el('div', 'wb-ErrorBox-message', errorText(error)));
    return;
  }
  box.appendChild(el('div', 'wb-ErrorBox-message', 'Refused by the model\'s promotion gates:'));
  box.appendChild(gateList(gates));
  if (apiError?.hint) {
    box.appendChild(el('div', 'wb-ErrorBox-hint', apiError.hint));
  }
}

function gateList(gates: IGateResult[]): HTMLElement {
  const list = el('ul', 'wb-Gates');
  const ordered = [...gates].sort((a, b) => Number(a.passed) - Number(b.passed));
  for (const gate of ordered) {
    const item = el('li', `wb-Gate ${gate.passed ? 'wb-mod-passed' : 'wb-mod-failed'}`);
    item.dataset.gate = gate.gate;
    item.append(
      el('span', 'wb-Gate-mark', gate.passed ? '✓ passed' : '✗ failed'),
      el('span', 'wb-Gate-name', gate.gate),
      el('span', 'wb-Gate-detail', gate.detail)
    );
    list.appendChild(item);
  }
  return list;
}

export function clearError(box: HTMLElement): void {
  box.textContent = '';
  box.hidden = true;
}

/** A `div.wb-ErrorBox`, hidden until an error is rendered into it. */
export function errorBox(): HTMLElement {
  const box = el('div', 'wb-ErrorBox');
  box.hidden = true;
  return box;
}

export interface IActionDialogOptions<T> {
  title: string;
  body: IActionBody<T>;
  /** Label of the accept button (it says what pressing it does). */
  acceptLabel: string;
  /** A warn-styled accept button for actions that move what production serves. */
  warn?: boolean;
  focusNodeSelector?: string;
  /** Runs on accept; the dialog closes when it resolves and shows its error when it throws. */
  action: (value: T) => Promise<void>;
}

/** A Dialog that stays open (with the error shown in its body) until its action succeeds. */
export class ActionDialog<T> extends Dialog<T> {
  constructor(options: IActionDialogOptions<T>) {
    const accept = options.warn
      ? Dialog.warnButton({ label: options.acceptLabel })
      : Dialog.okButton({ label: options.acceptLabel });
    const buttons = [Dialog.cancelButton(), accept];
    super({
      title: options.title,
      body: options.body,
      buttons,
      focusNodeSelector: options.focusNodeSelector
    });
    this.addClass('wb-ActionDialog');
    this.actionBody = options.body;
    this.action = options.action;
    this.buttonList = buttons;
  }

  private actionBody: IActionBody<T>;
  private action: (value: T) => Promise<void>;
  private buttonList: Dialog.IButton[];
  private busy = false;

  /** Accept runs the action (Enter and clicks both come here); any other button closes as usual. */
  resolve(index?: number): void {
    const chosen = index ?? this.buttonList.length - 1;
    if (!this.buttonList[chosen]?.accept) {
      super.resolve(index);
      return;
    }
    if (!this.busy) {
      void this.submit(chosen);
    }
  }

  private async submit(index: number): Promise<void> {
    this.setBusy(true);
    try {
      await this.action(this.actionBody.getValue());
    } catch (error) {
      this.setBusy(false);
      if (this.isDisposed) {
        notifyError(errorText(error)); // cancelled meanwhile: the dialog is gone, say it elsewhere
      } else {
        this.actionBody.showError(error);
      }
      return;
    }
    this.setBusy(false);
    super.resolve(index);
  }

  private setBusy(busy: boolean): void {
    this.busy = busy;
    this.toggleClass('wb-mod-busy', busy);
    const accept = this.node.querySelector<HTMLButtonElement>('.jp-Dialog-footer .jp-mod-accept');
    if (accept) {
      accept.disabled = busy;
    }
  }
}

/** A confirmation body: what will happen, an optional reason for the audit log, and room for an error. */
export class ConfirmBody extends Widget implements IActionBody<{ reason: string }> {
  constructor(message: string) {
    super();
    this.addClass('wb-Confirm');
    this.node.appendChild(el('p', 'wb-Confirm-message', message));
    this.reason = el('input', 'jp-mod-styled wb-Confirm-reason');
    this.reason.placeholder = 'Reason (recorded in the audit log)';
    this.reason.addEventListener('input', () => this.clearErrors());
    this.error = errorBox();
    this.node.append(this.reason, this.error);
  }

  private reason: HTMLInputElement;
  private error: HTMLElement;

  getValue(): { reason: string } {
    return { reason: this.reason.value.trim() };
  }

  showError(error: unknown): void {
    renderError(this.error, error);
  }

  clearErrors(): void {
    clearError(this.error);
  }
}

/**
 * Ask for confirmation (and a reason) and run `action`; refusals stay in the dialog.
 * Resolves true when the action ran, false when the user cancelled.
 */
export async function confirmAction(
  title: string,
  message: string,
  acceptLabel: string,
  action: (reason: string) => Promise<void>
): Promise<boolean> {
  const dialog = new ActionDialog<{ reason: string }>({
    title,
    body: new ConfirmBody(message),
    acceptLabel,
    warn: true,
    focusNodeSelector: '.wb-Confirm-reason',
    action: value => action(value.reason)
  });
  const result = await dialog.launch();
  return result.button.accept;
}
