/**
 * What the runs table does to runs through the REST API: rerun and cancel.
 *
 * A rerun is the server's `POST runs/<id>/rerun`: the original's stored notebook content, the
 * parameters it was given and the snapshot versions it read, executed in the background (as
 * `workbench rerun` does in the foreground). What cannot be exactly the same (the notebook file,
 * code commit or packages changed since) comes back as warnings, shown on the message line.
 */
import { errorText, postAPI } from './api';
import { shortId } from './runsTableData';

/** Start `runId` again; resolves with the new run's id and what differs from the original. */
export async function rerunRun(runId: string): Promise<{ runId: string; warnings: string[] }> {
  const started = await postAPI<{ run_id: string; warnings?: string[] }>(
    `runs/${encodeURIComponent(runId)}/rerun`,
    {}
  );
  return { runId: started.run_id, warnings: started.warnings ?? [] };
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
