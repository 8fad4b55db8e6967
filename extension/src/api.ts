/**
 * The one place that talks to the server: `/workbench/api/...` through Jupyter's authenticated
 * ServerConnection (token and XSRF handled by JupyterLab), with the server's
 * `{"error", "hint"}` bodies turned into readable exceptions.
 */
import { Notification } from '@jupyterlab/apputils';
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

/** One gate's verdict in a refused promotion (`gates` of the error body). */
export interface IGateResult {
  gate: string;
  passed: boolean;
  detail: string;
}

/** The server's `{"error", "hint", "field", "gates"}` reply as an exception. */
export class WorkbenchAPIError extends Error {
  constructor(
    message: string,
    readonly status: number,
    readonly hint: string | null = null,
    /** The form input the refusal is about: "experiment", "parallel", "params.<name>". */
    readonly field: string | null = null,
    /** Every gate's verdict when a promotion was refused by the model's gates. */
    readonly gates: IGateResult[] = []
  ) {
    super(message);
  }

  /** A refusal of what the user asked (4xx), which they can fix, as opposed to a server fault. */
  get isRefusal(): boolean {
    return this.status >= 400 && this.status < 500;
  }
}

export async function requestAPI<T>(
  endPoint: string,
  init: RequestInit = {},
  query: Record<string, string | undefined> = {}
): Promise<T> {
  const settings = ServerConnection.makeSettings();
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) {
    if (value !== undefined && value !== '') {
      params.set(key, value);
    }
  }
  const search = params.toString();
  const url =
    URLExt.join(settings.baseUrl, 'workbench', 'api', endPoint) +
    (search ? `?${search}` : '');
  let response: Response;
  try {
    response = await ServerConnection.makeRequest(url, init, settings);
  } catch (error) {
    throw new WorkbenchAPIError(`Cannot reach the Jupyter server: ${error}`, 0);
  }
  const text = await response.text();
  let data: any = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = text;
    }
  }
  if (!response.ok) {
    const message =
      (data && (data.error || data.message)) ||
      `${response.status} ${response.statusText}`;
    throw new WorkbenchAPIError(
      message,
      response.status,
      data?.hint ?? null,
      typeof data?.field === 'string' ? data.field : null,
      Array.isArray(data?.gates) ? data.gates : []
    );
  }
  return data as T;
}

export function postAPI<T>(endPoint: string, body: unknown): Promise<T> {
  return requestAPI<T>(endPoint, {
    method: 'POST',
    body: JSON.stringify(body)
  });
}

export function errorText(error: unknown): string {
  if (error instanceof WorkbenchAPIError) {
    return error.hint ? `${error.message} ${error.hint}` : error.message;
  }
  return error instanceof Error ? error.message : String(error);
}

/**
 * An error toast that stays until dismissed: in JupyterLab 4 an error notification that may
 * close by itself shows no toast at all, only a count on the status bar's bell.
 */
export function notifyError(message: string): void {
  Notification.error(message, { autoClose: false });
}

/** One row of GET runs: base columns plus `params.<k>`, `metrics.<k>`, `tags.<k>`. */
export interface IRunRow {
  run_id: string;
  experiment: string;
  status: string;
  created_at: string | null;
  duration_s: number | null;
  notebook: string | null;
  [column: string]: any;
}

export interface ISnapshot {
  ref: string;
  name: string;
  version: number;
  row_count: number;
  byte_size: number;
  created_at: string;
  creator: string;
  description: string | null;
  source: string;
  columns: { name: string; type: string }[];
  profile: Record<string, Record<string, any>>;
}

export interface IModelSummary {
  name: string;
  latest_version: number | null;
  aliases: Record<string, number>;
  description?: string | null;
}

export interface IModelDetail {
  name: string;
  aliases: Record<string, number>;
  versions: {
    version: number;
    run_id: string;
    created_at?: string;
    metrics?: Record<string, number | null>;
    [key: string]: any;
  }[];
}

/** GET runs/<id>: what the executed-notebook view's header shows. */
export interface IRunDetail {
  run_id: string;
  experiment: string;
  status: string;
  notebook: string | null;
  created_at: string | null;
  started_at: string | null;
  ended_at: string | null;
  duration_s: number | null;
  params: Record<string, any>;
  metrics: Record<string, number | null>;
  /** failed and killed runs: the exception, the failing cell (0-based) and its traceback */
  error: {
    ename?: string;
    evalue?: string;
    cell_index?: number | null;
    exec_count?: number | null;
    traceback?: string[];
  } | null;
}

/** One entry of GET serving (a model server's status file). */
export interface IModelServer {
  ref: string;
  model?: string;
  alias?: string | null;
  version?: number | null;
  canary?: { version: number; fraction: number } | null;
  url: string;
  pid: number;
  host?: string;
  started_at?: string;
}

export interface IParameterSpec {
  default: any;
  type: string;
  help: string;
}
