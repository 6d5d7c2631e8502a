/** Executions per state, as a definition list (read as "QUEUED: 3"). */
import { EXECUTION_STATES, type ExecutionStatus } from '../types.ts';
import { count } from '../format.ts';

export function StateCounts({ counts }: { counts: Record<ExecutionStatus, number> }) {
  return (
    <dl class="counts" data-testid="state-counts">
      {EXECUTION_STATES.map((s) => (
        <div key={s} class={`count count-${s.toLowerCase()}`}>
          <dt>{s.replace(/_/g, ' ')}</dt>
          <dd data-state={s}>{count(counts[s] ?? 0)}</dd>
        </div>
      ))}
    </dl>
  );
}
