/** A state shown as text in a coloured pill; the text carries the meaning, the colour only helps. */
const TONE: Record<string, string> = {
  SUCCEEDED: 'good',
  COMPLETED: 'good',
  SUCCESS: 'good',
  ONLINE: 'good',
  valid: 'good',
  active: 'good',
  FAILED: 'bad',
  FAILURE: 'bad',
  TIMED_OUT: 'bad',
  REJECTED: 'bad',
  ABORTED: 'bad',
  invalid: 'bad',
  REVOKED: 'bad',
  expired: 'bad',
  IN_PROGRESS: 'busy',
  DOWNLOADING: 'busy',
  VERIFYING: 'busy',
  INSTALLING: 'busy',
  PAUSED: 'warn',
  SCHEDULED: 'warn',
  unsigned: 'warn',
  previous_key: 'plain',
};

/** A badge for `status`. */
export function StatusBadge({ status }: { status: string }) {
  return <span class={`badge badge-${TONE[status] ?? 'plain'}`}>{status.replace(/_/g, ' ')}</span>;
}
