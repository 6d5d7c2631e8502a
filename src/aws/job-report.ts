/**
 * What an AWS UpdateJobExecution means in Updraft's terms (issue 9): the device's report in
 * `reported.software`, exactly what Updraft's own agent would write, so the execution
 * tracker applies the same transition table to both (one set of rules), and the shadow
 * keeps telling the truth about what runs.
 *
 * IN_PROGRESS → the agent phase named by `statusDetails.phase` (DOWNLOADING, VERIFYING or
 * INSTALLING), else the one last reported for this job, else DOWNLOADING. SUCCEEDED →
 * SUCCESS with the job's software as what now runs (so the delta empties). FAILED and
 * REJECTED → FAILURE, with what still runs and `statusDetails.reason` as the error.
 */
import { isJsonObject, type JsonObject, type JsonValue } from '../protocol/json.ts';
import type { AwsJobStatus } from '../protocol/aws-jobs-messages.ts';
import type { AgentStatus, DesiredSoftware } from '../protocol/software.ts';

const PHASES: readonly string[] = ['DOWNLOADING', 'VERIFYING', 'INSTALLING'];

/** The `reported.software` section to write for an AWS status update. */
export function reportFor(
  status: AwsJobStatus,
  agentJobId: string,
  software: DesiredSoftware,
  previous: JsonValue | undefined,
  statusDetails: Record<string, string> | undefined,
): JsonObject {
  const prev = isJsonObject(previous) ? previous : {};
  const sameJob = prev.jobId === agentJobId;
  const running: JsonObject = {};
  // only well-typed leaves are carried over: the replica refuses a report whose software
  // fields have the wrong type, and a shadow written before it checked them may hold one
  for (const k of ['name', 'version', 'sha256'] as const) if (typeof prev[k] === 'string') running[k] = prev[k];
  if (typeof prev.size === 'number' && Number.isSafeInteger(prev.size) && prev.size >= 0) running.size = prev.size;
  if (running.version === undefined) running.version = 'unknown';
  let agentStatus: AgentStatus;
  let out: JsonObject;
  if (status === 'SUCCEEDED') {
    agentStatus = 'SUCCESS';
    out = { name: software.name, version: software.version, sha256: software.sha256, size: software.size, error: null };
  } else if (status === 'FAILED' || status === 'REJECTED') {
    agentStatus = 'FAILURE';
    out = { ...running, error: statusDetails?.reason ?? `${status} by the device` };
  } else {
    const asked = statusDetails?.phase;
    agentStatus = (asked && PHASES.includes(asked) ? asked : sameJob && typeof prev.status === 'string' && PHASES.includes(prev.status) ? prev.status : 'DOWNLOADING') as AgentStatus;
    out = { ...running, error: null };
  }
  out.jobId = agentJobId;
  out.status = agentStatus;
  out.progress = null;
  if (statusDetails) {
    // AWS replaces statusDetails as a whole; the shadow merges leaf by leaf, so clear old keys
    const old = isJsonObject(prev.statusDetails) ? prev.statusDetails : {};
    const cleared: JsonObject = {};
    for (const k of Object.keys(old)) cleared[k] = null;
    // spread, not Object.assign: a device's "__proto__" key stays data
    out.statusDetails = { ...cleared, ...statusDetails };
  } else if (!sameJob && prev.statusDetails !== undefined) {
    out.statusDetails = null;
  }
  return out;
}
