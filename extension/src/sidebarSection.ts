/**
 * The pieces every section of the Workbench sidebar is made of: a collapsible section (a header
 * that stays in view, an optional toolbar and a body that scrolls on its own), compact buttons and
 * inline errors.
 */
import { LabIcon, caretDownIcon, refreshIcon } from '@jupyterlab/ui-components';

import { errorText } from './api';
import { el } from './dom';

/** The alias the sidebar's model buttons move. */
export const PRODUCTION = 'production';
/** Run statuses that no longer change. */
export const FINAL = new Set(['finished', 'failed', 'killed']);

/** A compact button that does not let its click reach the row under it. */
export function button(label: string, title: string, onClick: (event: MouseEvent) => void): HTMLButtonElement {
  const node = el('button', 'wb-Button jp-mod-styled', label);
  node.type = 'button';
  node.title = title;
  node.onclick = event => {
    event.stopPropagation();
    onClick(event);
  };
  return node;
}

/** An icon-only button (the lab's own icons), named for screen readers by its title. */
export function iconButton(icon: LabIcon, title: string, onClick: () => void): HTMLButtonElement {
  const node = button('', title, onClick);
  node.classList.add('wb-IconButton');
  node.setAttribute('aria-label', title);
  node.appendChild(icon.element({ tag: 'span', elementSize: 'small', className: 'wb-IconButton-icon' }));
  return node;
}

/** Replace a section's body with an inline error. */
export function showError(body: HTMLElement, error: unknown): void {
  body.textContent = '';
  body.appendChild(el('div', 'wb-Error', errorText(error)));
}

/** Remembered across reloads: which sections the user collapsed. */
const COLLAPSED_KEY = 'workbench:sidebar-collapsed';

function collapsedNames(): Set<string> {
  try {
    return new Set(JSON.parse(window.localStorage.getItem(COLLAPSED_KEY) ?? '[]'));
  } catch {
    return new Set();
  }
}

function rememberCollapsed(name: string, collapsed: boolean): void {
  const names = collapsedNames();
  if (collapsed) {
    names.add(name);
  } else {
    names.delete(name);
  }
  try {
    window.localStorage.setItem(COLLAPSED_KEY, JSON.stringify([...names]));
  } catch {
    // private mode or a full storage: the state lasts until the page reloads
  }
}

/**
 * One collapsible section: `<section.wb-Section-<name>>` with a header (a toggle button holding
 * the title and a count, then action buttons), an optional toolbar and the body.
 *
 * The header never scrolls away: the sidebar stacks its sections and only a section's body
 * scrolls, so every section is one click away however many runs there are.
 */
export class SidebarSection {
  constructor(
    readonly name: string,
    label: string,
    refresh: () => void,
    private onToggle: () => void = () => undefined
  ) {
    this.node = el('section', `wb-Section wb-Section-${name}`);
    this.node.dataset.section = name;
    const header = el('header', 'wb-Section-header');
    const heading = el('h2', 'wb-Section-title');
    this.toggle = el('button', 'wb-Section-toggle');
    this.toggle.type = 'button';
    this.toggle.id = `wb-section-${name}-toggle`;
    this.toggle.setAttribute('aria-controls', `wb-section-${name}-body`);
    this.toggle.appendChild(caretDownIcon.element({ tag: 'span', elementSize: 'small', className: 'wb-Section-caret' }));
    this.toggle.appendChild(el('span', 'wb-Section-label', label));
    this.count = el('span', 'wb-Section-count');
    this.toggle.appendChild(this.count);
    this.toggle.onclick = () => this.setCollapsed(!this.collapsed, true);
    heading.appendChild(this.toggle);
    this.actions = el('div', 'wb-Section-actions');
    this.actions.appendChild(iconButton(refreshIcon, `Refresh ${label.toLowerCase()}`, refresh));
    header.append(heading, this.actions);
    this.body = el('div', 'wb-Section-body');
    this.body.id = `wb-section-${name}-body`;
    this.body.setAttribute('role', 'region');
    this.body.setAttribute('aria-labelledby', this.toggle.id);
    this.node.append(header, this.body);
    this.setCollapsed(collapsedNames().has(name), false);
  }

  readonly node: HTMLElement;
  readonly body: HTMLElement;
  /** Where a section puts its buttons, left of the refresh button. */
  readonly actions: HTMLElement;
  private toggle: HTMLButtonElement;
  private count: HTMLElement;

  get collapsed(): boolean {
    return this.node.classList.contains('wb-mod-collapsed');
  }

  /** Collapse or expand; expanding brings the section into view (the sidebar may be scrolled). */
  setCollapsed(collapsed: boolean, byUser: boolean): void {
    this.node.classList.toggle('wb-mod-collapsed', collapsed);
    this.toggle.setAttribute('aria-expanded', String(!collapsed));
    this.toggle.title = `${collapsed ? 'Show' : 'Hide'} this section`;
    if (byUser) {
      rememberCollapsed(this.name, collapsed);
      this.onToggle();
      if (!collapsed) {
        this.node.scrollIntoView({ block: 'nearest' });
      }
    }
  }

  /** A toolbar between the header and the body (hidden with the body when collapsed). */
  addToolbar(toolbar: HTMLElement): void {
    toolbar.classList.add('wb-Section-toolbar');
    this.body.before(toolbar);
  }

  /** The number in the header (`Runs 312`); empty hides it. */
  setCount(text: string, title = ''): void {
    this.count.textContent = text;
    this.count.title = title;
  }
}
