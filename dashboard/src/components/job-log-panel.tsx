/**
 * A device's log of its failed attempt at a job (`job.log`), shown in the page (no dialog), and
 * the "View log" buttons that open it: the job page has one per device, the device page one per
 * job. A page shows one log at a time.
 */
import { useEffect, useLayoutEffect, useRef, useState } from 'preact/hooks';
import { ErrorNote, Loading } from './error-note.tsx';
import { count, dateTime } from '../format.ts';
import { useApi } from '../hooks.ts';
import type { JobLog, JobLogSummary } from '../types.ts';

/** The panel's element id, which the open button's `aria-controls` names. */
const PANEL_ID = 'job-log';

/**
 * Which log a page shows (`key`: a device id on the job page, a job id on the device page),
 * and its "View log" buttons. Closing it moves the focus back to the button that opened it.
 */
export function useJobLog(): {
  open: string | undefined;
  close: () => void;
  button: (key: string, label: string) => preact.JSX.Element;
} {
  const [open, setOpen] = useState<string | undefined>();
  const close = () => {
    const key = open;
    setOpen(undefined);
    if (key !== undefined) setTimeout(() => document.querySelector<HTMLElement>(`[data-log="${CSS.escape(key)}"]`)?.focus());
  };
  const button = (key: string, label: string) => (
    <button type="button" class="secondary small" data-log={key} aria-label={label} aria-expanded={open === key} aria-controls={open === key ? PANEL_ID : undefined} onClick={() => setOpen(key)}>
      View log
    </button>
  );
  return { open, close, button };
}

/**
 * One device's log of its failed attempt: the job id as the device saw it, when it came, how many
 * lines (and how many the device dropped in the middle), the lines. Loaded again when `summary`
 * says a newer one came (a later attempt's replaces it).
 */
export function JobLogPanel({ jobId, deviceId, summary, onClose }: { jobId: string; deviceId: string; summary: Pick<JobLogSummary, 'agentJobId' | 'receivedAt'> | undefined; onClose: () => void }) {
  const log = useApi<JobLog>(`/jobs/${encodeURIComponent(jobId)}/logs/${encodeURIComponent(deviceId)}`);
  const heading = useRef<HTMLHeadingElement>(null);
  const receivedAt = summary?.receivedAt;
  // the summary last seen of this log (another log opened in its place is loaded anyway)
  const which = `${jobId}/${deviceId}`;
  const seen = useRef({ which, receivedAt });
  useEffect(() => {
    const s = seen.current;
    if (s.which === which && receivedAt !== undefined && s.receivedAt !== undefined && receivedAt !== s.receivedAt) log.reload();
    seen.current = { which, receivedAt };
  }, [which, receivedAt]);
  // the focus moves to the log when it opens (from the button that opened it), as the heading
  // is put in the page: an effect ran after the next paint, and a reader (or a test) finding
  // the heading found the focus still on the button (CI, loaded: browser.test.ts)
  useLayoutEffect(() => heading.current?.focus(), [jobId, deviceId]);
  const l = log.data;
  const agentJobId = l?.agentJobId ?? summary?.agentJobId;
  return (
    <section id={PANEL_ID} class="log-panel" aria-labelledby="job-log-h" data-testid="job-log" onKeyDown={(e) => e.key === 'Escape' && onClose()}>
      <div class="title-row">
        <h3 id="job-log-h" tabIndex={-1} ref={heading}>
          Log of {deviceId}
          {agentJobId !== undefined && (
            <>
              {' '}
              for job <code>{agentJobId}</code>
            </>
          )}
        </h3>
        <button type="button" class="secondary" onClick={onClose}>
          Close
        </button>
      </div>
      <ErrorNote error={log.error} />
      {!l ? (
        !log.error && <Loading what="the log" />
      ) : (
        <>
          <p class="muted small">
            Received {dateTime(l.receivedAt)} · {count(l.lines.length)} line{l.lines.length === 1 ? '' : 's'}
          </p>
          {l.dropped > 0 && (
            <p class="notice" data-testid="job-log-dropped">
              {count(l.dropped)} line{l.dropped === 1 ? '' : 's'} dropped between the first lines and the latest: the device keeps both ends of a long job's log.
            </p>
          )}
          {l.lines.length === 0 ? (
            <p class="muted">The log has no lines.</p>
          ) : (
            <pre data-testid="job-log-lines" tabIndex={0}>
              {l.lines.join('\n')}
            </pre>
          )}
        </>
      )}
    </section>
  );
}
