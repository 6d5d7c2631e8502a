/**
 * The reason beside an event's state: in red for an error's outcome only. A cancellation (an
 * operator's, or a newer job that superseded it) or a paused job is no error: its reason is said
 * in the neutral style, the badge telling the state.
 */
const ERRORS = new Set(['FAILED', 'FAILURE', 'TIMED_OUT', 'REJECTED', 'ABORTED']);

/** True when the reason of an event of `status` is an error's (said in red). */
export function isErrorStatus(status: string): boolean {
  return ERRORS.has(status);
}

/** `reason`, styled by whether `status` is an error. */
export function EventReason({ status, reason }: { status: string; reason: string }) {
  return <span class={`reason ${isErrorStatus(status) ? 'reason-error' : 'reason-note'}`}>{reason}</span>;
}
