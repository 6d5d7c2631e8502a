/**
 * Health: what `updraft doctor` says of the fleet, computed by the server
 * (`GET /api/v1/health/findings`, at most 30 s old): each finding's verdict, check and text,
 * and, for one about devices, how many a fleet query selects with a link to them (the fleet
 * query page, `/fleet?query=…`). What depends on where a client stands (reachable, its token,
 * its clock) is doctor's only: run it for those.
 */
import { ErrorNote, Loading } from '../components/error-note.tsx';
import { TableScroll } from '../components/table-scroll.tsx';
import { count, dateTime } from '../format.ts';
import { useApi, usePoll } from '../hooks.ts';
import { Link } from '../router.tsx';

/** One finding, as doctor prints it. */
export interface HealthFinding {
  verdict: 'ok' | 'note' | 'warn' | 'FAIL';
  check: string;
  text: string;
  query?: string;
  count?: number;
}

/** The answer of `GET /health/findings`. */
export interface HealthFindings {
  generatedAt: number;
  keptSeconds: number;
  scanned: number;
  findings: HealthFinding[];
}

const BADGE: Record<HealthFinding['verdict'], string> = { ok: 'badge-good', note: 'badge', warn: 'badge-warn', FAIL: 'badge-bad' };
/** Worst first: what needs doing at the top. */
const ORDER: HealthFinding['verdict'][] = ['FAIL', 'warn', 'note', 'ok'];

/** The page of the devices a fleet query selects. */
export function fleetQueryHref(query: string): string {
  return `/fleet?query=${encodeURIComponent(query)}`;
}

/** The findings panel: one row per finding, worst first. */
export function HealthPanel() {
  const health = useApi<HealthFindings>('/health/findings');
  usePoll([health], 30_000);
  const rows = [...(health.data?.findings ?? [])].sort((a, b) => ORDER.indexOf(a.verdict) - ORDER.indexOf(b.verdict));
  return (
    <section aria-labelledby="health-h">
      <h2 id="health-h">Findings</h2>
      <ErrorNote error={health.error} />
      {!health.data ? (
        !health.error && <Loading what="findings" />
      ) : (
        <>
          <p class="muted" data-testid="health-generated">
            Computed by the server at {dateTime(health.data.generatedAt)} over {count(health.data.scanned)} devices (kept {health.data.keptSeconds} s). What depends on where a client stands (reachable, its token, its clock) <code>updraft doctor</code> says.
          </p>
          <TableScroll>
            <table data-testid="health-findings">
              <thead>
                <tr>
                  <th scope="col">Verdict</th>
                  <th scope="col">Check</th>
                  <th scope="col">Finding</th>
                  <th scope="col">Devices</th>
                </tr>
              </thead>
              <tbody>
                {rows.map((f, i) => (
                  <tr key={`${f.check}-${i}`} data-verdict={f.verdict}>
                    <td>
                      <span class={`badge ${BADGE[f.verdict]}`}>{f.verdict}</span>
                    </td>
                    <td>{f.check}</td>
                    <td>{f.text}</td>
                    <td>
                      {f.query !== undefined && (
                        <Link href={fleetQueryHref(f.query)} aria-label={`list the ${f.count !== undefined ? `${count(f.count)} ` : ''}devices of this finding`}>
                          {f.count !== undefined ? `${count(f.count)} device${f.count === 1 ? '' : 's'}` : 'list them'}
                        </Link>
                      )}
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </TableScroll>
        </>
      )}
    </section>
  );
}

export function HealthPage() {
  return (
    <>
      <h1>Health</h1>
      <HealthPanel />
    </>
  );
}
