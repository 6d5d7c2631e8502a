/**
 * Every execution of a job, a page at a time in device id order, as the API pages them
 * (`GET /api/v1/jobs/<id>/executions?status=&limit=50&after=`), filtered by state. The page's
 * cursor and the cursors of the pages before it are held in memory (never in the URL): going
 * back a page takes the cursor before. A change of filter starts from the first page. The logs
 * of failed attempts open from the failing devices' table and the logs table above it.
 */
import { useState } from 'preact/hooks';
import { count, dateTime } from '../format.ts';
import type { Loaded } from '../hooks.ts';
import { EXECUTION_STATES, type Execution, type ExecutionStatus, type Page } from '../types.ts';
import { DeviceLink } from './device-link.tsx';
import { ErrorNote, Loading } from './error-note.tsx';
import { StatusBadge } from './status-badge.tsx';
import { TableScroll } from './table-scroll.tsx';

/** Executions per page. */
export const EXECUTIONS_PAGE = 50;

/** The filters offered: every state, and the failures together. */
const FILTERS: { value: string; label: string }[] = [
  { value: '', label: 'any state' },
  { value: 'FAILED,TIMED_OUT,REJECTED', label: 'failed, timed out or rejected' },
  ...EXECUTION_STATES.map((s: ExecutionStatus) => ({ value: s, label: s })),
];

/** The paging state of the executions list: the filter, the page's cursor and those before it. */
export interface ExecutionsPaging {
  status: string;
  after: string | undefined;
  before: (string | undefined)[];
}

/** The path of the page `paging` names. */
export function executionsPath(jobIdEncoded: string, p: ExecutionsPaging): string {
  const q = new URLSearchParams({ limit: String(EXECUTIONS_PAGE) });
  if (p.status) q.set('status', p.status);
  if (p.after !== undefined) q.set('after', p.after);
  return `/jobs/${jobIdEncoded}/executions?${q}`;
}

/** The page's state, for the job page to read its executions with (it reloads them on events). */
export function useExecutionsPaging(): [ExecutionsPaging, (p: ExecutionsPaging) => void] {
  return useState<ExecutionsPaging>({ status: '', after: undefined, before: [] });
}

/** The list, its filter and its pager. */
export function JobExecutions({ page, paging, setPaging, counts }: { page: Loaded<Page<Execution>>; paging: ExecutionsPaging; setPaging: (p: ExecutionsPaging) => void; counts: Record<ExecutionStatus, number> | undefined }) {
  const [first, setFirst] = useState(0); // the position of the page's first row, for "51–100"
  const items = page.data?.items ?? [];
  const next = page.data?.next;
  // how many the filter selects, from the job's counts per state (read with the page's other figures)
  const states = paging.status ? (paging.status.split(',') as ExecutionStatus[]) : EXECUTION_STATES;
  const total = counts ? states.reduce((n, s) => n + (counts[s] ?? 0), 0) : undefined;
  return (
    <section aria-labelledby="executions-h">
      <h2 id="executions-h">All devices</h2>
      <form class="filters" role="search" aria-label="Filter the job's devices" onSubmit={(e) => e.preventDefault()}>
        <div class="field">
          <label for="exec-status">State</label>
          <select
            id="exec-status"
            value={paging.status}
            onChange={(e) => {
              setFirst(0);
              setPaging({ status: e.currentTarget.value, after: undefined, before: [] });
            }}
          >
            {FILTERS.map((f) => (
              <option key={f.value} value={f.value}>
                {f.label}
              </option>
            ))}
          </select>
        </div>
      </form>
      <ErrorNote error={page.error} />
      {!page.data ? (
        !page.error && <Loading what="the devices" />
      ) : (
        <>
          {items.length === 0 ? (
            <p class="muted">{paging.status ? 'No device of this job is in that state.' : 'This job has no devices.'}</p>
          ) : (
            <TableScroll>
              <table data-testid="executions-table">
                <caption class="sr-only">The job's devices in device id order</caption>
                <thead>
                  <tr>
                    <th scope="col">Device</th>
                    <th scope="col">State</th>
                    <th scope="col">Wave</th>
                    <th scope="col">Attempt</th>
                    <th scope="col">Reason</th>
                    <th scope="col">Last change</th>
                  </tr>
                </thead>
                <tbody>
                  {items.map((e) => (
                    <tr key={e.deviceId}>
                      <td>
                        <DeviceLink id={e.deviceId} />
                      </td>
                      <td>
                        <StatusBadge status={e.status} />
                      </td>
                      <td>{(e.wave ?? 0) + 1}</td>
                      <td>{e.attempt ?? 1}</td>
                      <td class="long-text keep-words">
                        {e.details.error ?? '—'}
                        {e.details.lateSuccess && <span class="muted"> · then reported SUCCESS {dateTime(e.details.lateSuccess.at)}: runs {e.details.lateSuccess.version}</span>}
                      </td>
                      <td>{dateTime(e.updatedAt)}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </TableScroll>
          )}
          <nav class="pager" aria-label="Pages of the job's devices">
            <button
              type="button"
              disabled={paging.before.length === 0}
              onClick={() => {
                setFirst(Math.max(0, first - EXECUTIONS_PAGE));
                setPaging({ status: paging.status, after: paging.before[paging.before.length - 1], before: paging.before.slice(0, -1) });
              }}
            >
              Previous
            </button>
            <span class="muted" aria-live="polite" data-testid="executions-range">
              {items.length === 0 ? 'none' : `${count(first + 1)}–${count(first + items.length)}`}
              {total !== undefined ? ` of ${count(total)}` : next ? '' : ` of ${count(first + items.length)}`}
            </span>
            <button
              type="button"
              disabled={!next}
              onClick={() => {
                setFirst(first + EXECUTIONS_PAGE);
                setPaging({ status: paging.status, after: next, before: [...paging.before, paging.after] });
              }}
            >
              Next
            </button>
          </nav>
        </>
      )}
    </section>
  );
}
