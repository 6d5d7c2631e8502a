/**
 * Rollout jobs, newest first, one server page at a time; live as jobs change. The page is in
 * the URL (`after`: the cursor of this page; `newer`, repeated: the cursors of the pages
 * between the first and this one), so back, forward, bookmarks and "Newer jobs" work: the
 * server pages only towards older jobs. A URL with `after` alone (an older bookmark) finds its
 * way back on "Newer jobs" by reading the pages from the newest (`job-pages.ts`).
 */
import { useState } from 'preact/hooks';
import { get } from '../api.ts';
import { ErrorNote, Loading } from '../components/error-note.tsx';
import { StatusBadge } from '../components/status-badge.tsx';
import { TableScroll } from '../components/table-scroll.tsx';
import { count, dateTime, jobHref, shortId } from '../format.ts';
import { useLiveList, useReadOnly } from '../hooks.ts';
import { findNewerPage, pageUrl as trailUrl } from '../job-pages.ts';
import { Link, navigate, useLocation } from '../router.tsx';
import type { Job, Page } from '../types.ts';

export function JobsPage() {
  const { query } = useLocation();
  const after = query.get('after');
  const newer = query.getAll('newer');
  /** The URL of a page: its cursor, and those of the pages before it (the last TRAIL_KEPT). */
  const pageUrl = (cursor: string | undefined, trail: string[]) => trailUrl('/jobs', cursor, trail);
  const listPath = (cursor: string | null | undefined) => `/jobs?limit=25${cursor ? `&after=${encodeURIComponent(cursor)}` : ''}`;
  // live as jobs change or are deleted, and read again when the stream reconnects: what
  // changed while it was down sent no event here (hooks.ts useLiveList: one read as the page opens)
  const jobs = useLiveList<Page<Job>>(listPath(after), { types: 'job.changed,job.deleted' });
  /** While the way back of a URL without it is looked for; its failure. */
  const [finding, setFinding] = useState<{ busy: boolean; error?: Error }>({ busy: false });
  const newerPage = async () => {
    // the pages before this one are in the URL: one step back along them
    if (newer.length > 0 || !after) return navigate(pageUrl(newer[newer.length - 1], newer.slice(0, -1)));
    // `after` alone (page 2, or a bookmark of a deeper page without its way back): found by reading from the newest
    setFinding({ busy: true });
    try {
      const found = await findNewerPage(after, async (cursor) => (await get<Page<Job>>(listPath(cursor))).next);
      setFinding({ busy: false });
      navigate(pageUrl(found.after, found.trail));
    } catch (err) {
      setFinding({ busy: false, error: err as Error });
    }
  };
  const readOnly = useReadOnly();
  return (
    <>
      <div class="title-row">
        <h1>Jobs</h1>
        {!readOnly && (
          <Link href="/jobs/new" class="button">
            New rollout
          </Link>
        )}
      </div>
      <ErrorNote error={jobs.error} />
      {!jobs.data ? (
        !jobs.error && <Loading what="jobs" />
      ) : jobs.data.items.length === 0 ? (
        <p class="muted">No job yet.</p>
      ) : (
        <TableScroll>
          <table data-testid="jobs-table">
            <caption class="sr-only">Jobs, newest first</caption>
            <thead>
              <tr>
                <th scope="col">Job</th>
                <th scope="col">Artifact</th>
                <th scope="col">State</th>
                <th scope="col">Devices</th>
                <th scope="col">Created</th>
                <th scope="col">Description</th>
              </tr>
            </thead>
            <tbody>
              {jobs.data.items.map((j) => (
                <tr key={j.jobId}>
                  <td>
                    <Link href={jobHref(j.jobId)} aria-label={`job ${j.jobId}`}>
                      {shortId(j.jobId)}
                    </Link>
                  </td>
                  <td>
                    {j.artifactName}@{j.artifactVersion}
                  </td>
                  <td>
                    <StatusBadge status={j.status} />
                  </td>
                  <td>{j.progress?.total !== undefined ? count(j.progress.total) : '—'}</td>
                  <td>{dateTime(j.createdAt)}</td>
                  <td class="long-text">{j.description ?? ''}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </TableScroll>
      )}
      {(after || jobs.data?.next) && (
        <nav class="pager" aria-label="Pages of jobs">
          <button type="button" disabled={!after} onClick={() => navigate('/jobs')}>
            Newest
          </button>
          <button type="button" disabled={!after || finding.busy} onClick={newerPage}>
            Newer jobs
          </button>
          <button type="button" disabled={!jobs.data?.next} onClick={() => navigate(pageUrl(jobs.data!.next!, after ? [...newer, after] : []))}>
            Older jobs
          </button>
        </nav>
      )}
      <ErrorNote error={finding.error} />
    </>
  );
}
