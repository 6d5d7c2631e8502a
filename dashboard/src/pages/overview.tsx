/**
 * Fleet overview: device counts (revoked ones apart from offline), version distribution,
 * the devices whose latest outcome is a failure, the fleet's newest failures first, across jobs
 * (one row each, naming the job),
 * recent events (revocations, reinstatements and deletions included). One small aggregated answer from the server
 * (`/fleet/overview`, cached there for 2 s). Live: job, presence and credentials events reload it (at
 * most every 2 s); execution events are left out of this page's stream, because during a
 * big rollout they come by the hundred per second: a 5 s poll shows their effect instead.
 */
import { DeviceLink } from '../components/device-link.tsx';
import { ErrorNote, Loading } from '../components/error-note.tsx';
import { EventReason } from '../components/event-reason.tsx';
import { StatusBadge } from '../components/status-badge.tsx';
import { TableScroll } from '../components/table-scroll.tsx';
import { VersionChart } from '../components/version-chart.tsx';
import { count, dateTime, jobHref, shortId, time } from '../format.ts';
import { useApi, useLiveReload, usePoll } from '../hooks.ts';
import { Link } from '../router.tsx';
import type { FleetOverview, Page, RecentEvent } from '../types.ts';

function Stat({ label, value, id }: { label: string; value: number; id: string }) {
  return (
    <div class="stat">
      <dt id={id}>{label}</dt>
      <dd aria-labelledby={id} data-testid={`stat-${id}`}>{count(value)}</dd>
    </div>
  );
}

export function OverviewPage() {
  const overview = useApi<FleetOverview>('/fleet/overview');
  const recent = useApi<Page<RecentEvent>>('/events/recent?limit=15');
  // device.credentials: a revocation, reinstatement or deletion (recent events, the counts)
  // (those changes only: a bulk registration is not 100,000 events to each open overview)
  useLiveReload({ types: 'job.changed,job.deleted,device.presence,device.credentials', changes: 'revoked,reinstated,deleted,unregistered' }, [overview, recent], 2000);
  usePoll([overview, recent], 5000);
  const o = overview.data;
  return (
    <>
      <h1>Fleet overview</h1>
      <ErrorNote error={overview.error} />
      {!o ? (
        !overview.error && <Loading what="the fleet" />
      ) : (
        <>
          <section aria-labelledby="devices-h">
            <h2 id="devices-h">Devices</h2>
            <dl class="stats">
              <Stat id="registered" label="Registered" value={o.devices.registered} />
              <Stat id="online" label="Online" value={o.devices.online} />
              {/* revoked devices are counted apart, not as offline (until 2026-12-06 they were both) */}
              <Stat id="offline" label="Offline" value={Math.max(0, o.devices.registered - o.devices.revoked - o.devices.online)} />
              <Stat id="revoked" label="Revoked" value={o.devices.revoked} />
              <Stat id="jobs-active" label="Jobs in progress" value={o.jobs.IN_PROGRESS + o.jobs.PAUSED + o.jobs.SCHEDULED} />
            </dl>
          </section>
          <div class="columns">
            <section aria-labelledby="versions-h">
              <h2 id="versions-h">Versions running</h2>
              <VersionChart versions={o.versions} unreported={Math.max(0, o.devices.registered - o.devices.reporting)} />
            </section>
            <section aria-labelledby="failing-h">
              <h2 id="failing-h">Devices with failures</h2>
              {o.failing.length === 0 ? (
                <p class="muted">No device whose latest update failed.</p>
              ) : (
                <TableScroll>
                  <table data-testid="failing-devices">
                    <caption class="sr-only">Devices whose latest outcome is a failure, the newest failure first, with that job</caption>
                    <thead>
                      <tr>
                        <th scope="col">Device</th>
                        <th scope="col">Job</th>
                        <th scope="col">State, when</th>
                        <th scope="col">Reason</th>
                      </tr>
                    </thead>
                    <tbody>
                      {o.failing.map((f) => (
                        <tr key={`${f.jobId}/${f.deviceId}`}>
                          <td>
                            <DeviceLink id={f.deviceId} />
                          </td>
                          <td class="long-text">
                            <Link href={jobHref(f.jobId)} aria-label={`job ${f.jobId}`} title={f.jobId}>
                              job {shortId(f.jobId)}
                            </Link>
                            {f.jobDescription && <> {f.jobDescription}</>}
                            <span class="muted small"> · {f.artifact}</span>
                          </td>
                          {/* the failure's time under its state, not a column of its own: a fifth
                              column pushed the table past a 1024 px window beside a 128-character id */}
                          <td>
                            <StatusBadge status={f.status} />
                            <div class="muted small">
                              <FailedAt at={f.failedAt ?? f.updatedAt} />
                            </div>
                          </td>
                          <td class="long-text">{f.reason ?? '—'}</td>
                        </tr>
                      ))}
                    </tbody>
                  </table>
                </TableScroll>
              )}
            </section>
          </div>
        </>
      )}
      <section aria-labelledby="events-h">
        <h2 id="events-h">Recent events</h2>
        <ErrorNote error={recent.error} />
        {recent.data ? <RecentEvents events={recent.data.items} /> : !recent.error && <Loading what="events" />}
      </section>
    </>
  );
}

function RecentEvents({ events }: { events: RecentEvent[] }) {
  if (events.length === 0) return <p class="muted">Nothing has happened since the server started.</p>;
  return (
    <ol class="events" data-testid="recent-events">
      {events.map((e) => (
        <li key={e.seq}>
          <time dateTime={new Date(e.at).toISOString()}>{time(e.at)}</time>
          {e.deviceId && <DeviceLink id={e.deviceId} />}
          {e.jobId && (
            <Link href={jobHref(e.jobId)} aria-label={`job ${e.jobId}`}>
              job {shortId(e.jobId)}
            </Link>
          )}
          <StatusBadge status={e.status} />
          {e.reason && <EventReason status={e.status} reason={e.reason} />}
        </li>
      ))}
    </ol>
  );
}

/**
 * When a failing device's failure came (`failedAt`), or its execution's last change when the
 * answer has none: an older server instance behind the same load balancer (a rolling upgrade
 * past 2026-12-07) answers without it. No `dateTime` for a time that is no date, for
 * `toISOString` throws on one, and the page would fail to render (app.tsx PageBoundary shows the error).
 */
function FailedAt({ at }: { at: number }) {
  if (!Number.isFinite(at)) return <>—</>;
  return <time dateTime={new Date(at).toISOString()}>{dateTime(at)}</time>;
}
