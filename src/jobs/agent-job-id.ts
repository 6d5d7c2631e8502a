/**
 * The job id a device sees. The agent applies a job id at most once (a retry must look new
 * to it), so attempt 1 of job J is `J` and attempt n > 1 is `J.n`. Commands the server sends
 * to undo a job on a device are `<device job id>.cancel` and `J.rollback`. Job ids are
 * UUIDs, which never contain a dot, so the parse is unambiguous.
 */

/** The device-side id of attempt `attempt` of `jobId`. */
export function agentJobId(jobId: string, attempt = 1): string {
  return attempt <= 1 ? jobId : `${jobId}.${attempt}`;
}

/** What a device-side job id names: an attempt of a job, or a control command about one. */
export type ParsedAgentJobId = { jobId: string; attempt: number; control?: 'cancel' | 'rollback' };

/** Parses a device-side job id; undefined when it cannot be one of ours. */
export function parseAgentJobId(id: string): ParsedAgentJobId | undefined {
  const parts = id.split('.');
  const jobId = parts[0]!;
  if (jobId === '' || parts.length > 3) return undefined;
  if (parts.length === 1) return { jobId, attempt: 1 };
  const last = parts[parts.length - 1]!;
  const attempt = parts.length === 3 || /^\d+$/.test(parts[1]!) ? Number(parts[1]) : 1;
  if (last === 'cancel' || last === 'rollback') return { jobId, attempt: Number.isSafeInteger(attempt) && attempt > 0 ? attempt : 1, control: last };
  if (parts.length === 2 && /^\d+$/.test(last)) return { jobId, attempt: Number(last) };
  return undefined;
}
