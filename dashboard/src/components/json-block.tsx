/** A JSON value, pretty-printed, in a labelled region that scrolls instead of stretching the page. */
export function JsonBlock({ title, value }: { title: string; value: unknown }) {
  const id = `json-${title.toLowerCase().replace(/\W+/g, '-')}`;
  return (
    <section class="json" aria-labelledby={id}>
      <h3 id={id}>{title}</h3>
      {value === undefined || value === null ? <p class="muted">none</p> : <pre tabIndex={0}>{JSON.stringify(value, null, 2)}</pre>}
    </section>
  );
}
