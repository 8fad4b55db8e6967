/**
 * The sidebar's first line when the lab works through a team server (GET status): which server,
 * and as which user and role, so nobody mistakes the team's runs for a folder of their own, and a
 * viewer knows why Register or Run is refused. A lab on its own workspace folder shows nothing.
 */
import { errorText, requestAPI } from './api';
import { el } from './dom';

/** GET status: the team server this lab reads and writes through, or the workspace folder. */
export interface ILabStatus {
  server: {
    url: string;
    /** How it was configured: "WORKBENCH_URL" or "workbench login". */
    source: string;
    user: string | null;
    role: string | null;
    /** Why the server did not say who the token is (e.g. it refused the token). */
    error: string | null;
  } | null;
  workspace: string | null;
}

/** `host:port` of a server URL (its path prefix, if any, stays in the tooltip). */
function hostOf(url: string): string {
  try {
    return new URL(url).host;
  } catch {
    return url;
  }
}

export class ConnectionLine {
  constructor() {
    this.node = el('div', 'wb-Connection');
    this.node.hidden = true;
    this.node.setAttribute('role', 'status');
  }

  readonly node: HTMLElement;

  async load(): Promise<void> {
    let status: ILabStatus;
    try {
      status = await requestAPI<ILabStatus>('status');
    } catch (error) {
      this.show('Team server unavailable', errorText(error), true);
      return;
    }
    const server = status.server;
    if (!server) {
      this.node.hidden = true;
      return;
    }
    const host = hostOf(server.url);
    if (server.error || !server.user) {
      this.show(host, server.error ?? `The team server ${server.url} did not say who this token is.`, true);
      return;
    }
    this.show(
      host,
      `Team server ${server.url} (${server.source}): runs, snapshots and models are read from it ` +
        `and written to it as ${server.user}, role ${server.role}.`,
      false,
      `${server.user} · ${server.role}`
    );
  }

  private show(host: string, title: string, failed: boolean, user = ''): void {
    this.node.textContent = '';
    this.node.title = title;
    this.node.classList.toggle('wb-mod-error', failed);
    this.node.append(
      el('span', 'wb-Connection-dot'),
      el('span', 'wb-Connection-host', host),
      el('span', 'wb-Connection-user', failed ? 'not connected' : user)
    );
    this.node.hidden = false;
  }
}
