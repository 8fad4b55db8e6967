/**
 * The sidebar's Models section: the registered models with their aliases, a click for a
 * model's versions (each with "Set production → vN"), Rollback, and what the model servers
 * serve now. Also the promote flow ("Register run…") the Runs section uses.
 */
import { Notification } from '@jupyterlab/apputils';

import {
  IModelDetail,
  IModelServer,
  IModelSummary,
  errorText,
  postAPI,
  requestAPI
} from './api';
import { confirmAction } from './dialogs';
import { disclosure, el } from './dom';
import { formatMetric, formatSince } from './format';
import { PRODUCTION, SidebarSection, button, showError } from './sidebarSection';

type AliasAnswer = { name: string; version: number; alias: string };

/**
 * Register a run's model (the model's gates decide) and point `alias` at it, after a
 * confirmation; a refusal (e.g. a failed gate) stays in the dialog. True when it was done.
 */
export async function promoteRun(runId: string, model: string | null = null, alias = PRODUCTION): Promise<boolean> {
  const what = model ? `model ${model} of run ${runId}` : `the model of run ${runId}`;
  return confirmAction(
    'Register run',
    `Register ${what} as a new version and point "${alias}" at it? The model's promotion gates are checked first.`,
    `Register and set ${alias}`,
    async reason => {
      const result = await postAPI<AliasAnswer>('models/promote', { run_id: runId, model, alias, reason: reason || null });
      Notification.success(`${result.name} v${result.version} is now "${result.alias}".`, { autoClose: 4000 });
    }
  );
}

/**
 * What a model server serves, for whom and since when: `classifier@v2 (production) · canary v3
 * 10% · since 14:02 (5 min ago)`, then where it listens.
 */
function serverLine(server: IModelServer): HTMLElement {
  const line = el('div', 'wb-Server');
  const model = server.model ?? server.ref.split('@')[0];
  const served = server.version ? `${model}@v${server.version}` : server.ref;
  const what = el('div', 'wb-Server-what');
  what.appendChild(el('span', 'wb-Server-model', served));
  if (server.alias) {
    what.appendChild(el('span', 'wb-Alias', server.alias));
  }
  if (server.canary) {
    const share = Math.round(server.canary.fraction * 1000) / 10;
    what.appendChild(el('span', 'wb-Server-canary', `canary v${server.canary.version} · ${share}%`));
  }
  const since = formatSince(server.started_at);
  if (since) {
    what.appendChild(el('span', 'wb-Muted', since));
  }
  const where = el('div', 'wb-Muted wb-Server-where', `${server.url} · pid ${server.pid}`);
  line.append(what, where);
  line.title = `${server.ref} served at ${server.url}${server.started_at ? ' since ' + server.started_at : ''}`;
  return line;
}

export class ModelsSection {
  /** `openMonitor`: the model's Monitor tab (live quality, drift, A/B), one action per model line. */
  constructor(
    readonly section: SidebarSection,
    private openMonitor?: (model: string) => void
  ) {}

  private openModel: string | null = null;

  async load(): Promise<void> {
    const body = this.section.body;
    let models: IModelSummary[];
    try {
      models = await requestAPI<IModelSummary[]>('models');
    } catch (error) {
      showError(body, error);
      return;
    }
    // Which servers run is asked separately: a failure says so under Serving, never "none running".
    let servers: IModelServer[] = [];
    let servingError: unknown = null;
    try {
      servers = await requestAPI<IModelServer[]>('serving');
    } catch (error) {
      servingError = error;
    }
    this.section.setCount(models.length ? String(models.length) : '');
    const scroll = body.scrollTop;
    body.textContent = '';
    if (!models.length) {
      body.appendChild(el('div', 'wb-Empty', 'No models yet: "Register run…" on a finished run that logged one.'));
    }
    const list = el('ul', 'wb-List wb-Models');
    for (const model of models) {
      list.appendChild(this.modelItem(model));
    }
    body.appendChild(list);
    const serving = el('div', 'wb-Serving');
    serving.appendChild(el('h3', '', 'Serving'));
    if (servingError !== null) {
      serving.appendChild(el('div', 'wb-Error', `Cannot list the model servers: ${errorText(servingError)}`));
    } else if (!servers.length) {
      serving.appendChild(el('div', 'wb-Empty', 'No model servers running.'));
    }
    for (const server of servers) {
      serving.appendChild(serverLine(server));
    }
    body.appendChild(serving);
    body.scrollTop = scroll;
  }

  private modelItem(model: IModelSummary): HTMLElement {
    const item = el('li', 'wb-Model');
    item.dataset.model = model.name;
    const line = el('div', 'wb-Model-line');
    line.appendChild(el('span', 'wb-Model-name', model.name));
    line.appendChild(el('span', 'wb-Muted', model.latest_version ? `v${model.latest_version}` : ''));
    for (const [alias, version] of Object.entries(model.aliases ?? {})) {
      line.appendChild(el('span', 'wb-Alias', `${alias} → v${version}`));
    }
    if (this.openMonitor) {
      const monitor = button('Monitor', `Open the Monitor of ${model.name}: live quality, traffic, drift, A/B`, () =>
        this.openMonitor?.(model.name)
      );
      monitor.classList.add('wb-Model-monitor');
      line.appendChild(monitor);
    }
    line.title = [model.name, model.description].filter(Boolean).join('\n') + '\nClick for its versions.';
    disclosure(line, this.openModel === model.name, () => {
      this.openModel = this.openModel === model.name ? null : model.name;
      void this.load();
    });
    item.appendChild(line);
    if (this.openModel === model.name) {
      const detail = el('div', 'wb-Muted', 'Loading…');
      item.appendChild(detail);
      void this.showModel(model.name, detail);
    }
    return item;
  }

  private async showModel(name: string, placeholder: HTMLElement): Promise<void> {
    let model: IModelDetail;
    try {
      model = await requestAPI<IModelDetail>(`models/${encodeURIComponent(name)}`);
    } catch (error) {
      placeholder.textContent = errorText(error);
      return;
    }
    const detail = el('div', 'wb-Model-detail');
    const aliasesByVersion: Record<number, string[]> = {};
    for (const [alias, version] of Object.entries(model.aliases ?? {})) {
      (aliasesByVersion[version] ??= []).push(alias);
    }
    // Two columns (what the version is, what can be done with it) so a 300 px sidebar shows both.
    const table = el('table', 'wb-Table wb-Versions');
    const tbody = table.createTBody();
    for (const version of [...(model.versions ?? [])].sort((a, b) => b.version - a.version)) {
      const row = tbody.insertRow();
      row.dataset.version = String(version.version);
      row.appendChild(this.versionCell(version, aliasesByVersion[version.version] ?? []));
      const actions = row.insertCell();
      actions.className = 'wb-Version-actions';
      if (!(aliasesByVersion[version.version] ?? []).includes(PRODUCTION)) {
        actions.appendChild(
          button(
            `Set ${PRODUCTION} → v${version.version}`,
            `Point "${PRODUCTION}" at the registered v${version.version} (no gates: it was registered already)`,
            () => void this.setAlias(name, PRODUCTION, version.version)
          )
        );
      }
    }
    detail.appendChild(table);
    for (const alias of Object.keys(model.aliases ?? {})) {
      detail.appendChild(
        button(`Rollback ${alias}`, `Point "${alias}" back at its previous version`, () => void this.rollback(name, alias))
      );
    }
    placeholder.replaceWith(detail);
  }

  /** `v2 [production]`, then the run it came from and its first metrics, wrapping in a narrow panel. */
  private versionCell(version: IModelDetail['versions'][number], aliases: string[]): HTMLTableCellElement {
    const cell = el('td', 'wb-Version');
    const title = el('div', 'wb-Version-title');
    title.appendChild(el('span', 'wb-Version-number', `v${version.version}`));
    for (const alias of aliases) {
      title.appendChild(el('span', 'wb-Alias', alias));
    }
    const metrics = Object.entries(version.metrics ?? {})
      .slice(0, 3)
      .map(([k, v]) => `${k}=${formatMetric(v)}`)
      .join(' ');
    cell.append(title, el('div', 'wb-Muted wb-Version-run', [version.run_id, metrics].filter(Boolean).join(' · ')));
    return cell;
  }

  /** Point `alias` at an already registered version: no gates, the pointer moves (audited). */
  private async setAlias(name: string, alias: string, version: number): Promise<void> {
    const done = await confirmAction(
      `Set ${alias}`,
      `Point "${alias}" of ${name} at v${version}? Servers following ${name}@${alias} switch to it.`,
      `Set ${alias} → v${version}`,
      async reason => {
        const result = await postAPI<AliasAnswer>(`models/${encodeURIComponent(name)}/alias`, {
          alias,
          version,
          reason: reason || null
        });
        Notification.success(`${result.name}: "${result.alias}" → v${result.version}.`, { autoClose: 4000 });
      }
    );
    if (done) {
      await this.load();
    }
  }

  private async rollback(name: string, alias: string): Promise<void> {
    const done = await confirmAction(
      'Roll back model',
      `Point alias "${alias}" of ${name} back at its previous version?`,
      'Roll back',
      async reason => {
        const result = await postAPI<AliasAnswer>(`models/${encodeURIComponent(name)}/rollback`, {
          alias,
          to: null,
          reason: reason || null
        });
        Notification.success(`${result.name}: "${result.alias}" → v${result.version}.`, { autoClose: 4000 });
      }
    );
    if (done) {
      await this.load();
    }
  }
}
