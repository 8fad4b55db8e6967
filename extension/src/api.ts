/**
 * The one place that talks to the server: `/workbench/api/...` through Jupyter's authenticated
 * ServerConnection (token and XSRF handled by JupyterLab), with the server's
 * `{"error", "hint"}` bodies turned into readable exceptions.
 */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

export class WorkbenchAPIError extends Error {
  constructor(
    message: string,
    readonly status: number,
    readonly hint: string | null = null
  ) {
    super(message);
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
    throw new WorkbenchAPIError(message, response.status, data?.hint ?? null);
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
  return String(error);
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

export interface IParameterSpec {
  default: any;
  type: string;
  help: string;
}
