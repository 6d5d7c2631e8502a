/**
 * The way back to newer jobs from a Jobs page opened without it. The server pages jobs only
 * towards older ones (`?after=<cursor>`, the cursor being the last job's `<createdAt>:<jobId>`,
 * newest first), so the Jobs page keeps the cursors of the pages before it in its URL
 * (`newer`, the last TRAIL_KEPT of them). A link or bookmark that has `after` alone (made
 * before the URL kept them, or cut short) has no way back: the page just newer is found by reading the pages from the newest
 * until the one that holds the job the cursor names.
 */

/** Pages read at most (25 jobs each) before giving up and going to the newest page. */
export const MAX_PAGES_WALKED = 40;

/**
 * Cursors of the pages before it a page's URL keeps (`newer`), the last ones: the URL grew by
 * a cursor (about 60 characters) at each "Older", and past some 270 pages it was longer than
 * the 16 KB of request head the server takes, so a reload or a shared link of it failed (431).
 * Going newer past the kept ones reads the way back from the newest (`findNewerPage`, as for a
 * bookmark without its trail): found for a page among the first MAX_PAGES_WALKED (as many as
 * are kept); from deeper, "Newer" past the kept cursors goes to the newest page, as the docs say.
 */
export const TRAIL_KEPT = MAX_PAGES_WALKED;

/** The dashboard URL of the page of `base` (`/jobs`, `/artifacts`) that starts after `cursor` (undefined: the first), with the last TRAIL_KEPT cursors of the pages before it. */
export function pageUrl(base: string, cursor: string | undefined, trail: readonly string[]): string {
  if (cursor === undefined) return base;
  const q = new URLSearchParams();
  for (const c of trail.slice(-TRAIL_KEPT)) q.append('newer', c);
  q.set('after', cursor);
  return `${base}?${q.toString()}`;
}

/** Where the page just newer than `?after=<after>` is: its cursor (undefined: the first page) and the cursors of the pages before it. */
export interface NewerPage {
  after: string | undefined;
  trail: string[];
}

/** Whether cursor `a` names a job newer than cursor `b` (the server's order: created at, then job id, both descending). */
export function isNewer(a: string, b: string): boolean {
  const [atA, idA] = splitCursor(a);
  const [atB, idB] = splitCursor(b);
  return atA !== atB ? atA > atB : idA > idB;
}

function splitCursor(c: string): [number, string] {
  const colon = c.indexOf(':');
  return [Number(c.slice(0, colon)), c.slice(colon + 1)];
}

/**
 * Finds the page that holds the job `after` names (the newest page of those before the one
 * that starts after it), reading pages from the newest with `next(cursor)` (the `next` cursor
 * of the page that starts after `cursor`; undefined: the first page). Read `maxPages` pages
 * without finding it (a page thousands of jobs deep): the first page, as "Newest".
 */
export async function findNewerPage(after: string, next: (cursor: string | undefined) => Promise<string | undefined>, maxPages = MAX_PAGES_WALKED): Promise<NewerPage> {
  const starts: string[] = [];
  let cursor: string | undefined;
  for (let read = 0; read < maxPages; read++) {
    const end = await next(cursor);
    // this page ends at the job `after` names or past it: it holds that job
    if (end === undefined || !isNewer(end, after)) return { after: cursor, trail: starts.slice(0, -1) };
    starts.push(end);
    cursor = end;
  }
  return { after: undefined, trail: [] };
}
