/**
 * The way back to newer jobs from a Jobs page opened without it. The server pages jobs only
 * towards older ones (`?after=<cursor>`, the cursor being the last job's `<createdAt>:<jobId>`,
 * newest first), so the Jobs page keeps the cursors of the pages before it in its URL
 * (`newer`). A link or bookmark that has `after` alone (made before the URL kept them, or cut
 * short) has no way back: the page just newer is found by reading the pages from the newest
 * until the one that holds the job the cursor names.
 */

/** Pages read at most (25 jobs each) before giving up and going to the newest page. */
export const MAX_PAGES_WALKED = 40;

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
