/**
 * One device: connection, desired / reported / delta state, its jobs (with the logs its agent sent
 * of failed attempts, opened in the page) and its last events, live (a `job.log` event of the
 * device reloads it too); delete it (decommission). Deleted meanwhile, it says so and nothing else.
 */
import { useState } from 'preact/hooks';
import { api, ApiError } from '../api.ts';
import { ConfirmAction } from '../components/confirm-action.tsx';
import { ErrorNote, Loading, UnreadPage } from '../components/error-note.tsx';
import { EventReason } from '../components/event-reason.tsx';
import { JobLogPanel, useJobLog } from '../components/job-log-panel.tsx';
import { JsonBlock } from '../components/json-block.tsx';
import { StatusBadge } from '../components/status-badge.tsx';
import { TableScroll } from '../components/table-scroll.tsx';
import { clientCertificateExpiry, dateTime, jobHref, shortId, succeededNote, time } from '../format.ts';
import { streamAfter, useApi, useLiveReload, useReadOnly } from '../hooks.ts';
import { Link, navigate } from '../router.tsx';
import type { DeviceEvent, DeviceView, Execution, Page } from '../types.ts';

/** Jobs per page of the device's history. */
const HISTORY_PAGE = 50;

export function DevicePage({ id }: { id: string }) {
  const enc = encodeURIComponent(id);
  const device = useApi<DeviceView>(`/devices/${enc}`);
  // its other sections and its live stream once it is known to exist: an unknown device (a
  // mistyped or deleted id) costs one request, and holds no stream open (a first read that got no
  // answer opens the stream, whose reload once connected brings the page back: streamAfter)
  // deleted while the page is open (here, from the CLI, another tab): the re-read that its deletion's
  // event (device.credentials) brings says it is not registered. What the page held is stale:
  // said once, with nothing else, and nothing more asked of the server, as for an unknown device
  const deleted = device.data !== undefined && device.error instanceof ApiError && device.error.status === 404;
  const known = device.data !== undefined && !deleted;
  // its jobs, a page at a time (a device's history only grows); the cursors of newer pages kept for
  // "Newer jobs" ('' for the first). The router keys this page by device id: another device starts afresh
  const [pages, setPages] = useState<{ after?: string; newer: string[] }>({ newer: [] });
  const history = useApi<Page<Execution>>(known ? `/devices/${enc}/history?limit=${HISTORY_PAGE}${pages.after ? `&after=${encodeURIComponent(pages.after)}` : ''}` : null);
  const events = useApi<Page<DeviceEvent>>(known ? `/devices/${enc}/events?limit=20` : null);
  // every event of this device reloads them all: its executions, its logs, its presence, and its
  // credentials (revoked or reinstated here, from the CLI or another tab; a stream carries
  // device.credentials only when asked for by types)
  // (opened after the first answer: reloaded once connected, for what changed in between)
  useLiveReload(streamAfter(device) && !deleted ? { deviceId: id, types: 'execution.changed,job.log,device.presence,device.credentials' } : null, [device, history, events], 1000, true);
  // the log shown, by job id
  const { open: openLog, close: closeLog, button: logButton } = useJobLog();
  const d = device.data;
  // its logs of failed attempts by job: the newest 100 (jobLogs), and any older one its history marks
  const logOf = new Map<string, { agentJobId: string; receivedAt: number }>();
  for (const e of history.data?.items ?? []) if (e.log) logOf.set(e.jobId, e.log);
  for (const l of d?.jobLogs ?? []) {
    const known = logOf.get(l.jobId);
    if (!known || known.receivedAt < l.receivedAt) logOf.set(l.jobId, l);
  }
  if (!d && device.error) {
    return <UnreadPage list="Devices" listHref="/devices" title="Device" id={id} error={device.error} />;
  }
  if (deleted) {
    return <UnreadPage list="Devices" listHref="/devices" title="Device" id={id} error={new Error(`Device ${id} was deleted while this page was open: it is no longer registered. The jobs that reached it keep their records.`)} />;
  }
  return (
    <>
      <p class="crumbs">
        <Link href="/devices">Devices</Link> / {id}
      </p>
      <h1>
        Device {id} {d && <StatusBadge status={d.device.revoked ? 'REVOKED' : d.online ? 'ONLINE' : 'OFFLINE'} />}
      </h1>
      <ErrorNote error={device.error} />
      {!d ? (
        <Loading what="the device" />
      ) : (
        <>
          <p class="muted" data-testid="device-facts">
            Registered {dateTime(d.device.createdAt)}
            {d.device.tags.length > 0 && <> · tags {d.device.tags.join(', ')}</>}
            <Attributes attributes={d.device.attributes} />
            {d.shadow && <> · shadow version {d.shadow.version}</>}
          </p>
          <AgentFacts agent={d.shadow?.state.reported?.agent} />
          <DeviceControls id={id} revoked={d.device.revoked} onChange={device.reload} />
          <section aria-labelledby="state-h">
            <h2 id="state-h">State</h2>
            <div class="columns three">
              <JsonBlock title="Desired" value={d.shadow?.state.desired} />
              <JsonBlock title="Reported" value={d.shadow?.state.reported} />
              <JsonBlock title="Delta" value={d.shadow?.state.delta} />
            </div>
          </section>
        </>
      )}
      {/* the history's six columns take the page's width (beside the events its reasons were squeezed to a few letters); the events follow */}
      <div class="columns">
        <section aria-labelledby="history-h" class="wide">
          <h2 id="history-h">Job history</h2>
          <ErrorNote error={history.error} />
          {history.data && history.data.items.length === 0 && <p class="muted">No job has targeted this device.</p>}
          {history.data && history.data.items.length > 0 && (
            <TableScroll>
              <table data-testid="device-jobs">
                <thead>
                  <tr>
                    <th scope="col">Job</th>
                    <th scope="col">Artifact</th>
                    <th scope="col">State</th>
                    <th scope="col">Reason</th>
                    <th scope="col">Updated</th>
                    <th scope="col">Log</th>
                  </tr>
                </thead>
                <tbody>
                  {history.data.items.map((e) => (
                    <tr key={e.jobId}>
                      <td>
                        <Link href={jobHref(e.jobId)} aria-label={`job ${e.jobId}`}>
                          {shortId(e.jobId)}
                        </Link>
                      </td>
                      <td>{e.artifact ?? '—'}</td>
                      <td>
                        <StatusBadge status={e.status} />
                      </td>
                      <td class="long-text keep-words">
                        {e.details.error ?? (e.status === 'IN_PROGRESS' && e.details.waiting ? `install put off by the device (${e.details.waiting.count}): ${e.details.waiting.reason}` : succeededNote(e) ? null : '—')}
                        {e.details.lateSuccess && <span class="muted"> · then reported SUCCESS {dateTime(e.details.lateSuccess.at)}: runs {e.details.lateSuccess.version}</span>}
                        {/* ended SUCCEEDED in place of its retry: it had timed out, or the retry was not sent */}
                        {succeededNote(e) && <span class="muted" data-testid="succeeded-note">{succeededNote(e)}</span>}
                      </td>
                      <td>{dateTime(e.updatedAt)}</td>
                      <td>{logOf.has(e.jobId) ? logButton(e.jobId, `View the log of job ${e.jobId}`) : '—'}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </TableScroll>
          )}
          {(pages.after !== undefined || history.data?.next) && (
            <nav class="pager" aria-label="Pages of this device's jobs">
              <button type="button" disabled={pages.after === undefined} onClick={() => setPages((p) => ({ ...(p.newer.length > 1 ? { after: p.newer[p.newer.length - 1] } : {}), newer: p.newer.slice(0, -1) }))}>
                Newer jobs
              </button>
              <button type="button" disabled={!history.data?.next} onClick={() => setPages((p) => ({ after: history.data!.next!, newer: [...p.newer, p.after ?? ''] }))}>
                Older jobs
              </button>
            </nav>
          )}
          {openLog !== undefined && <JobLogPanel jobId={openLog} deviceId={id} summary={logOf.get(openLog)} onClose={closeLog} />}
        </section>
        <section aria-labelledby="dev-events-h">
          <h2 id="dev-events-h">Last events</h2>
          <ErrorNote error={events.error} />
          {events.data && events.data.items.length === 0 && <p class="muted">No events yet.</p>}
          {events.data && (
            <ol class="events" data-testid="device-events">
              {events.data.items.map((e, i) => (
                <li key={`${e.at}-${i}`}>
                  <time dateTime={new Date(e.at).toISOString()}>{time(e.at)}</time>
                  <StatusBadge status={e.status} />
                  {e.artifact && <span>{e.artifact}</span>}
                  {e.reason && <EventReason status={e.status} reason={e.reason} />}
                </li>
              ))}
            </ol>
          )}
        </section>
      </div>
    </>
  );
}

/**
 * The device's attributes (what a job's targets select it by, as its tags), `key = value` each,
 * in key order. Text only: a value is any string an operator or a bulk import gave
 * (`<img src=x onerror=…>` is shown as written).
 */
function Attributes({ attributes }: { attributes: Record<string, unknown> | undefined }) {
  const entries = Object.entries(attributes ?? {}).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  if (entries.length === 0) return null;
  return (
    <>
      {' · attributes '}
      <span data-testid="device-attributes">
        {entries.map(([k, v], i) => (
          <span key={k}>
            {i > 0 && '; '}
            {k} = {typeof v === 'object' && v !== null ? JSON.stringify(v) : String(v)}
          </span>
        ))}
      </span>
    </>
  );
}

/**
 * What the device's agent says of itself (`reported.agent`): what it checks software
 * against, when its client certificate expires (the broker refuses it after that) and why its
 * last renewal failed (`certificateRenewalError`, null once one succeeds: said as doctor says it),
 * and the CA that issued it (`certificateIssuer`: a device still on the previous CA of a rollover).
 */
function AgentFacts({ agent }: { agent: unknown }) {
  if (typeof agent !== 'object' || agent === null) return null;
  const a = agent as { trust?: string; keyId?: string; certificateExpiresAt?: number; certificateRenewalError?: unknown; certificateIssuer?: unknown };
  const facts: preact.JSX.Element[] = [];
  if (a.trust === 'root') facts.push(<>checks software against the offline root <code>{a.keyId}</code></>);
  else if (a.trust === 'signing-key') facts.push(<>checks software against signing key <code>{a.keyId}</code></>);
  else if (a.trust === 'unsigned') facts.push(<span class="note-bad">accepts unsigned software</span>);
  if (typeof a.certificateExpiresAt === 'number') {
    const { text, tone } = clientCertificateExpiry(a.certificateExpiresAt);
    facts.push(<span class={`note-${tone}`}>{text}</span>);
  }
  if (typeof a.certificateRenewalError === 'string') {
    facts.push(
      <span class="note-bad" data-testid="renewal-error">
        renewal failed: {a.certificateRenewalError}
      </span>,
    );
  }
  if (typeof a.certificateIssuer === 'string') {
    facts.push(
      <span data-testid="certificate-issuer">
        issued by <code>{a.certificateIssuer}</code>
      </span>,
    );
  }
  if (facts.length === 0) return null;
  return (
    <p class="muted" data-testid="agent-facts">
      Agent:{' '}
      {facts.map((f, i) => (
        <span key={i}>
          {i > 0 && ' · '}
          {f}
        </span>
      ))}
    </p>
  );
}

/**
 * Revoke (confirmed: the device is disconnected and refused) or reinstate, and delete
 * (confirmed; back to the device list once done).
 */
function DeviceControls({ id, revoked, onChange }: { id: string; revoked: boolean; onChange: () => void }) {
  const enc = encodeURIComponent(id);
  const readOnly = useReadOnly();
  const [error, setError] = useState<string | undefined>();
  /** The running jobs that took the device back when it was reinstated (they had skipped it while it was revoked). */
  const [requeued, setRequeued] = useState<string[] | undefined>();
  const reinstate = async () => {
    setError(undefined);
    try {
      const r = await api<{ jobsRequeued?: string[] }>('POST', `/devices/${enc}/reinstate`);
      setRequeued(r.jobsRequeued ?? []);
      onChange();
    } catch (err) {
      setError((err as Error).message);
    }
  };
  if (readOnly) return null;
  return (
    <div class="controls" role="group" aria-label="Device controls">
      {revoked ? (
        <button type="button" onClick={reinstate}>
          Reinstate device
        </button>
      ) : (
        <ConfirmAction
          label="Revoke device"
          question={`Revoke ${id}? Its connection is closed and it is refused at connect and at download until reinstated.`}
          confirm={`Yes, revoke ${id}`}
          keep="Keep it"
          run={async () => {
            await api('POST', `/devices/${enc}/revoke`);
            onChange();
          }}
        />
      )}{' '}
      <ConfirmAction
        label="Delete device"
        question={`Delete ${id}? It is disconnected and refused from now on, its unfinished job executions end, its shadows are deleted; its job history stays.`}
        confirm={`Yes, delete ${id}`}
        keep="Keep it"
        run={async () => {
          await api('DELETE', `/devices/${enc}`);
          navigate('/devices');
        }}
      />
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
      {requeued && requeued.length > 0 && !revoked && (
        <p role="status" data-testid="jobs-requeued">
          Queued again in the running {requeued.length === 1 ? 'job' : 'jobs'} that skipped it while it was revoked:{' '}
          {requeued.map((jobId, i) => (
            <span key={jobId}>
              {i > 0 && ', '}
              <Link href={jobHref(jobId)} aria-label={`job ${jobId}`}>
                {shortId(jobId)}
              </Link>
            </span>
          ))}
        </p>
      )}
    </div>
  );
}
