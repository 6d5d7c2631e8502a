import { Link } from '../router.tsx';

/** An API error shown where the data would be. */
export function ErrorNote({ error }: { error: Error | undefined }) {
  if (!error) return null;
  return (
    <p class="error" role="alert">
      {error.message}
    </p>
  );
}

/** "Loading…" while there is nothing to show yet. */
export function Loading({ what }: { what: string }) {
  return <p class="muted" aria-live="polite">Loading {what}…</p>;
}

/**
 * A page whose subject (a device, a job) could not be read (unknown, or no server): its
 * crumbs, its heading and the error, said once, not again by each of its sections.
 */
export function UnreadPage({ list, listHref, title, id, error }: { list: string; listHref: string; title: string; id: string; error: Error }) {
  return (
    <>
      <p class="crumbs">
        <Link href={listHref}>{list}</Link> / {id}
      </p>
      <h1>
        {title} {id}
      </h1>
      <ErrorNote error={error} />
    </>
  );
}
