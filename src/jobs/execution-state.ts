/**
 * Job execution states and their legal transitions (docs/design.md §4, STYLE.md habit 7).
 * Terminal states are final: a retry is a new attempt (`canRetry`), not a move a report can make.
 */
import { UpdraftError } from '../errors.ts';
import type { AgentStatus } from '../protocol/software.ts';
import type { ExecutionStatus } from '../store/state-store.ts';

const TRANSITIONS: Record<ExecutionStatus, readonly ExecutionStatus[]> = {
  // QUEUED may jump to a final state: a fast device's intermediate reports can be missed
  QUEUED: ['IN_PROGRESS', 'SUCCEEDED', 'FAILED', 'TIMED_OUT', 'REJECTED', 'CANCELED', 'REMOVED'],
  // REMOVED: the device was deleted during its update (fleet/decommission.ts); no report sets it
  IN_PROGRESS: ['IN_PROGRESS', 'SUCCEEDED', 'FAILED', 'TIMED_OUT', 'REJECTED', 'CANCELED', 'REMOVED'],
  SUCCEEDED: [],
  FAILED: [],
  TIMED_OUT: [],
  REJECTED: [],
  CANCELED: [],
  REMOVED: [],
};

/** Every execution state, in lifecycle order (for validation and display). */
export const EXECUTION_STATUSES = Object.keys(TRANSITIONS) as readonly ExecutionStatus[];

/** True for states no report can leave. */
export function isTerminal(status: ExecutionStatus): boolean {
  return TRANSITIONS[status].length === 0;
}

/** True when `from` → `to` is legal. */
export function canTransition(from: ExecutionStatus, to: ExecutionStatus): boolean {
  return TRANSITIONS[from].includes(to);
}

/** Terminal states a retry may restart (as a new attempt, back to QUEUED). */
export function canRetry(status: ExecutionStatus): boolean {
  return status === 'FAILED' || status === 'TIMED_OUT';
}

/** Throws CONFLICT naming the illegal transition. */
export function assertTransition(from: ExecutionStatus, to: ExecutionStatus): void {
  if (!canTransition(from, to)) throw new UpdraftError('CONFLICT', `illegal execution transition ${from} -> ${to}`);
}

/** The execution state a device's reported phase means. */
export function executionStatusFor(agent: AgentStatus): ExecutionStatus | undefined {
  switch (agent) {
    case 'DOWNLOADING':
    case 'VERIFYING':
    case 'INSTALLING':
      return 'IN_PROGRESS';
    case 'SUCCESS':
      return 'SUCCEEDED';
    case 'FAILURE':
      return 'FAILED';
    default:
      return undefined;
  }
}
