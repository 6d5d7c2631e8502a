/**
 * One job: overall and per-wave progress, counts per execution state, completions over
 * time, failing devices with their reasons and the logs their agents sent of the failed
 * attempt (`job.log`), and pause / resume / cancel. Live: every event of this job reloads the
 * (aggregated, small) answers, at most once a second.
 */
import { useState } from 'preact/hooks';
import { api } from '../api.ts';
import { ConfirmAction } from '../components/confirm-action.tsx';
import { DeviceLink } from '../components/device-link.tsx';
import { ErrorNote, Loading, UnreadPage } from '../components/error-note.tsx';
import { executionsPath, JobExecutions, useExecutionsPaging } from '../components/job-executions.tsx';
import { JobLogPanel, useJobLog } from '../components/job-log-panel.tsx';
import { JobSettings } from '../components/job-settings.tsx';
import { ProgressBar } from '../components/progress-bar.tsx';
import { StateCounts } from '../components/state-counts.tsx';
import { StatusBadge } from '../components/status-badge.tsx';
import { TableScroll } from '../components/table-scroll.tsx';
import { TimelineChart } from '../components/timeline-chart.tsx';
import { count, dateTime, storageHeldNotice } from '../format.ts';
import { streamAfter, useApi, useLiveReload, useReadOnly } from '../hooks.ts';
import { progressOf } from '../job-progress.ts';
import { Link } from '../router.tsx';
import type { Execution, JobLogSummary, JobView, JobTimeline, Page } from '../types.ts';

const FINAL = ['COMPLETED', 'CANCELED', 'ABORTED'];

export function JobPage({ id }: { id: string }) {
  // the id as a path segment: one from a URL may hold '?', '#' or '/' (it then names no job,
  // which the server says), never another resource (the job list, another job's timeline)
  const enc = encodeURIComponent(id);
  // limit=1: the view's counts are what this page needs, not the executions
  const view = useApi<JobView>(`/jobs/${enc}?limit=1`);
  // its other sections and its live stream once it is known to exist: an unknown job (a
  // mistyped or deleted id) costs one request, and holds no stream open (a first read that got no
  // answer opens the stream, whose reload once connected brings the page back: streamAfter)
  const known = view.data !== undefined;
  const timeline = useApi<JobTimeline>(known ? `/jobs/${enc}/timeline?buckets=40` : null);
  const failing = useApi<Page<Execution>>(known ? `/jobs/${enc}/executions?status=FAILED,TIMED_OUT,REJECTED&limit=50` : null);
  // the devices' logs of failed attempts, without their lines (one per device, at most maxLogsPerJob)
  const logs = useApi<Page<JobLogSummary>>(known ? `/jobs/${enc}/logs?limit=1000` : null);
  // every execution, a page at a time, filtered by state (its cursors in memory)
  const [paging, setPaging] = useExecutionsPaging();
  const executions = useApi<Page<Execution>>(known ? executionsPath(enc, paging) : null);
  // every event of this job (execution.changed, job.changed, job.log) reloads them all (the
  // stream opens after the first answer: reloaded once connected, for what changed in between)
  useLiveReload(streamAfter(view) ? { jobId: id } : null, [view, timeline, failing, logs, executions], 1000, true);
  // the log shown, by device id
  const { open: openLog, close: closeLog, button: logButton } = useJobLog();
  const v = view.data;
  const logOf = new Map((logs.data?.items ?? []).map((l) => [l.deviceId, l]));
  const failingIds = new Set((failing.data?.items ?? []).map((e) => e.deviceId));
  // logs of devices not in the failing table: still updating (the failure not reported yet), a
  // later attempt that succeeded, or past the table's first 50
  const otherLogs = failing.data ? (logs.data?.items ?? []).filter((l) => !failingIds.has(l.deviceId)) : [];
  const held = v && storageHeldNotice(v.job.status, v.job.progress?.storageHeldSince, v.job.progress?.heldBy);
  if (!v && view.error) {
    return <UnreadPage list="Jobs" listHref="/jobs" title="Job" id={id} error={view.error} />;
  }
  return (
    <>
      <p class="crumbs">
        <Link href="/jobs">Jobs</Link> / {id}
      </p>
      <ErrorNote error={view.error} />
      {!v ? (
        <Loading what="the job" />
      ) : (
        <>
          <h1>
            {v.job.artifactName}@{v.job.artifactVersion} <StatusBadge status={v.job.status} />
          </h1>
          <p class="muted">
            Job {v.job.jobId} · created {dateTime(v.job.createdAt)}
            {v.job.description && <> · {v.job.description}</>}
          </p>
          <JobSettings job={v.job} />
          {v.job.progress?.pause && v.job.status === 'PAUSED' && (
            <p class="notice" role="status">
              Paused: {v.job.progress.pause.message}
            </p>
          )}
          {held && (
            <p class="notice" role="status" data-testid="storage-held">
              {held}
            </p>
          )}
          {v.job.progress?.windowClosed && v.job.status === 'IN_PROGRESS' && (
            <p class="notice" role="status" data-testid="window-closed">
              Outside its maintenance windows: nothing new is sent
              {v.job.progress.windowClosed.opensAt !== undefined ? ` until ${dateTime(v.job.progress.windowClosed.opensAt)}` : ''} (devices already updating go on).
            </p>
          )}
          {v.job.spec?.plan?.timeZone === 'device' && v.job.spec.plan.windows && (
            <p class="muted" data-testid="device-windows">
              Installs in each device's own maintenance windows ({v.job.spec.plan.windows.map((w) => `${w.start} for ${w.minutes} min${w.days ? ` on ${w.days.join(', ')}` : ''}`).join('; ')}, in the device's time zone): commands go out at any time, and a device outside its window has downloaded and waits, saying until when.
            </p>
          )}
          {v.job.progress?.abortReason && (
            <p class="error" role="status">
              Aborted: {v.job.progress.abortReason}
            </p>
          )}
          <Controls view={v} onChange={() => (view.reload(), failing.reload(), executions.reload())} />
          <section aria-labelledby="progress-h">
            <h2 id="progress-h">Progress</h2>
            <div data-testid="job-progress">
              <ProgressBar label="All devices" {...progressOf(v.counts, v.job.status === 'COMPLETED')} />
            </div>
            {v.waves.length > 1 && v.waves.map((w) => <ProgressBar key={w.wave} label={`Wave ${w.wave + 1}`} {...progressOf(w.counts, v.job.status === 'COMPLETED')} />)}
          </section>
          <section aria-labelledby="counts-h">
            <h2 id="counts-h">Devices per state</h2>
            <StateCounts counts={v.counts} />
          </section>
        </>
      )}
      <section aria-labelledby="timeline-h">
        <h2 id="timeline-h">Completions over time</h2>
        <ErrorNote error={timeline.error} />
        {timeline.data ? <TimelineChart timeline={timeline.data} /> : !timeline.error && <Loading what="the chart" />}
      </section>
      <section aria-labelledby="failing-h">
        <h2 id="failing-h">Failing devices</h2>
        <ErrorNote error={failing.error} />
        {failing.data && failing.data.items.length === 0 && <p class="muted">No device has failed.</p>}
        {failing.data && failing.data.items.length > 0 && (
          <TableScroll>
            <table data-testid="failing-table">
              <thead>
                <tr>
                  <th scope="col">Device</th>
                  <th scope="col">State</th>
                  <th scope="col">Reason</th>
                  <th scope="col">When</th>
                  <th scope="col">Log</th>
                </tr>
              </thead>
              <tbody>
                {failing.data.items.map((e) => (
                  <tr key={e.deviceId}>
                    <td>
                      <DeviceLink id={e.deviceId} />
                    </td>
                    <td>
                      <StatusBadge status={e.status} />
                    </td>
                    <td class="long-text keep-words">
                      {e.details.error ?? '—'}
                      {/* finished after it timed out: it runs the job's build (execution-tracker.ts, lateSuccess) */}
                      {e.details.lateSuccess && <span class="muted"> · then reported SUCCESS {dateTime(e.details.lateSuccess.at)}: runs {e.details.lateSuccess.version}</span>}
                    </td>
                    <td>{dateTime(e.updatedAt)}</td>
                    <td>{logOf.has(e.deviceId) ? logButton(e.deviceId, `View the log of ${e.deviceId}`) : '—'}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </TableScroll>
        )}
        {failing.data?.next && <p class="muted">Showing the first 50 by device id: every one is under All devices below (its state "failed, timed out or rejected").</p>}
        <ErrorNote error={logs.error} />
        {otherLogs.length > 0 && (
          <>
            <h3 id="other-logs-h">Logs of other devices</h3>
            <p class="muted small">Sent by devices not listed above: their failure is not reported yet, a later attempt succeeded, or they are past the first 50.</p>
            <TableScroll>
              <table data-testid="other-logs-table" aria-labelledby="other-logs-h">
                <thead>
                  <tr>
                    <th scope="col">Device</th>
                    <th scope="col">Job id on the device</th>
                    <th scope="col">Received</th>
                    <th scope="col">Lines</th>
                    <th scope="col">Log</th>
                  </tr>
                </thead>
                <tbody>
                  {otherLogs.map((l) => (
                    <tr key={l.deviceId}>
                      <td>
                        <DeviceLink id={l.deviceId} />
                      </td>
                      <td>
                        <code>{l.agentJobId}</code>
                      </td>
                      <td>{dateTime(l.receivedAt)}</td>
                      <td>{count(l.lineCount)}</td>
                      <td>{logButton(l.deviceId, `View the log of ${l.deviceId}`)}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </TableScroll>
          </>
        )}
        {logs.data?.next && <p class="muted">Showing the first 1,000 logs by device id.</p>}
        {openLog !== undefined && <JobLogPanel jobId={id} deviceId={openLog} summary={logOf.get(openLog)} onClose={closeLog} />}
      </section>
      {known && <JobExecutions page={executions} paging={paging} setPaging={setPaging} counts={v?.counts} />}
    </>
  );
}

/** Pause, resume and cancel; cancel asks for confirmation in the page (no browser dialog). */
function Controls({ view, onChange }: { view: JobView; onChange: () => void }) {
  const [error, setError] = useState<string | undefined>();
  const [busy, setBusy] = useState(false);
  const readOnly = useReadOnly();
  const status = view.job.status;
  const act = async (action: 'pause' | 'resume') => {
    setBusy(true);
    setError(undefined);
    try {
      await api('POST', `/jobs/${encodeURIComponent(view.job.jobId)}/${action}`);
      onChange();
    } catch (err) {
      setError((err as Error).message);
    } finally {
      setBusy(false);
    }
  };
  if (FINAL.includes(status) || readOnly) return null;
  return (
    <div class="controls" role="group" aria-label="Job controls">
      {status === 'PAUSED' ? (
        <button type="button" disabled={busy} onClick={() => act('resume')}>
          {view.job.progress?.pause && view.job.progress.pause.reason !== 'operator' ? 'Approve next wave' : 'Resume'}
        </button>
      ) : (
        <button type="button" disabled={busy} onClick={() => act('pause')}>
          Pause
        </button>
      )}
      <ConfirmAction
        label="Cancel job"
        question="Cancel this job? Queued devices are skipped and devices not yet installing are told to stop."
        confirm="Yes, cancel the job"
        keep="Keep it running"
        run={async () => {
          await api('POST', `/jobs/${encodeURIComponent(view.job.jobId)}/cancel`);
          onChange();
        }}
      />
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
    </div>
  );
}
