/**
 * What the runs table does to runs through the REST API: rerun and cancel.
 *
 * There is no rerun endpoint: a rerun is a new run (POST runs) of the same notebook with the same
 * parameters in the same experiment, as the brief of the table asks. Only the parameters the
 * notebook's `parameters` cell still declares are passed (a run also records what it logged
 * itself, which the Run form would refuse as unknown parameters).
 */
import { PageConfig } from '@jupyterlab/coreutils';

import { IRunDetail, errorText, postAPI, requestAPI } from './api';
import { shortId } from './runsTableData';

/**
 * A recorded notebook path as the server's `POST runs` wants it: relative to the Jupyter root.
 * Runs started from JupyterLab record the absolute path of the notebook.
 */
export function relativeNotebook(path: string): string {
  const root = (PageConfig.getOption('serverRoot') || '').replace(/\\/g, '/').replace(/\/+$/, '');
  const normal = path.replace(/\\/g, '/');
  if (root && normal.startsWith(root + '/')) {
    return normal.slice(root.length + 1);
  }
  return normal;
}

/** Start `runId` again; resolves with the new run's id. */
export async function rerunRun(runId: string): Promise<string> {
  const run = await requestAPI<IRunDetail>(`runs/${encodeURIComponent(runId)}`);
  if (!run.notebook) {
    throw new Error(`Run ${shortId(runId)} has no notebook to run again (an interactive run).`);
  }
  const notebook = relativeNotebook(run.notebook);
  const form = await requestAPI<{ parameters: Record<string, unknown> }>(
    'notebooks/parameters',
    {},
    { path: notebook }
  );
  const declared = new Set(Object.keys(form.parameters ?? {}));
  const params = Object.fromEntries(Object.entries(run.params ?? {}).filter(([name]) => declared.has(name)));
  const started = await postAPI<{ run_id: string }>('runs', { notebook, params, experiment: run.experiment });
  return started.run_id;
}

/** Ask a queued or running run to stop; false when it had already ended. */
export async function cancelRun(runId: string): Promise<boolean> {
  const answer = await postAPI<{ cancelled: boolean }>(`runs/${encodeURIComponent(runId)}/cancel`, {});
  return answer.cancelled;
}

/** Run `work` on each id; one line saying what happened (failures named with their reason). */
export async function forEachRun(
  runIds: string[],
  work: (runId: string) => Promise<string>,
  verb: string
): Promise<{ text: string; failed: boolean }> {
  const done: string[] = [];
  const failures: string[] = [];
  for (const runId of runIds) {
    try {
      done.push(await work(runId));
    } catch (error) {
      failures.push(`${shortId(runId)}: ${errorText(error)}`);
    }
  }
  if (!failures.length) {
    return { text: done.join(' '), failed: false };
  }
  const what = failures.length === 1 ? failures[0] : `${failures.length} runs: ${failures.join('; ')}`;
  return { text: [`Cannot ${verb} ${what}`, ...done].join(' '), failed: true };
}
