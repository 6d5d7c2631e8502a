/**
 * Device search: filters go into the URL (back, forward and bookmarks work) and to the
 * server, which pages in device id order; the browser holds one page at a time. The
 * cursors of the last 10 earlier pages are kept in the URL for "Previous" (bounded: "First
 * page" beyond them), with the page's number; the total matching is asked once per search
 * (`/fleet/search/count`). The form follows the URL.
 */
import { useEffect, useState } from 'preact/hooks';
import { DeviceLink } from '../components/device-link.tsx';
import { ErrorNote, Loading } from '../components/error-note.tsx';
import { StatusBadge } from '../components/status-badge.tsx';
import { TableScroll } from '../components/table-scroll.tsx';
import { DEVICE_SEARCH_EVENTS, touchesSearch } from '../device-search-live.ts';
import { count } from '../format.ts';
import { useApi, useLiveList, usePoll, type Loaded } from '../hooks.ts';
import { navigate, useLocation } from '../router.tsx';
import type { SearchCount, SearchPage } from '../types.ts';

const FILTERS = ['id', 'tag', 'group', 'version', 'state'] as const;
const STATES = ['online', 'offline', 'updating', 'failed', 'revoked'];
const PAGE = 25;
/** Cursors of earlier pages kept in the URL for "Previous"; before them, "First page". */
const PREV_KEPT = 10;
/** The search's filters, by name ('' when not set). */
type Filters = Record<(typeof FILTERS)[number], string>;

export function DevicesPage() {
  const { query } = useLocation();
  const after = query.get('after') ?? '';
  // the cursors of the pages before, comma-separated ('' for the first page), the last
  // PREV_KEPT only: the URL stays bounded however far one pages (it grew by a cursor a page)
  const prev = query.get('prev') ?? '';
  // the page's number, 1 for the first; absent on a URL from before it was kept (then unknown)
  const pageNo = after ? Number(query.get('page') ?? NaN) : 1;
  const filters = Object.fromEntries(FILTERS.map((k) => [k, query.get(k) ?? ''])) as Filters;
  const filterParams = new URLSearchParams();
  for (const k of FILTERS) if (filters[k]) filterParams.set(k, filters[k]);
  const params = new URLSearchParams({ limit: String(PAGE) });
  for (const [k, v] of filterParams) params.set(k, v);
  if (after) params.set('after', after);
  // live: presence and credentials by stream (device-search-live.ts), at most every 3 s, and
  // read again when the stream reconnects: what changed while it was down sent no event here
  // (one read as the page opens: hooks.ts useLiveList); what a rollout changes (desired,
  // update status, version) by a poll every 5 s
  const page: Loaded<SearchPage> = useLiveList<SearchPage>(`/fleet/search?${params}`, { types: DEVICE_SEARCH_EVENTS }, 3000, (e): boolean => touchesSearch(e, filters, shown));
  const shown = new Set((page.data?.items ?? []).map((d) => d.deviceId));
  usePoll([page], 5000);
  // how many match: asked once per search, not per page. A filtered count may read up to
  // 100,000 devices on the server, so it is not polled (a tab left open on a search read them
  // every 30 s); the whole fleet's is the database's count, polled every 30 s
  const total = useApi<SearchCount>(`/fleet/search/count${filterParams.toString() !== '' ? `?${filterParams}` : ''}`);
  usePoll(filterParams.toString() === '' ? [total] : [], 30_000);

  const go = (f: Record<string, string>, cursor: string, prevList: string[], n: number) => {
    const q = new URLSearchParams();
    for (const k of FILTERS) if (f[k]) q.set(k, f[k]);
    if (cursor) q.set('after', cursor);
    const kept = prevList.slice(-PREV_KEPT);
    if (cursor && kept.length > 0) q.set('prev', kept.join(','));
    if (cursor && Number.isInteger(n)) q.set('page', String(n));
    const qs = q.toString();
    navigate(`/devices${qs ? `?${qs}` : ''}`);
  };
  // split on ',' kept the first page's '' ("" alone is no list)
  const prevList = query.has('prev') ? prev.split(',') : [];
  const next = page.data?.next;

  return (
    <>
      <h1>Devices</h1>
      <FilterForm filters={filters} onSearch={(f) => go(f, '', [], 1)} />
      <ErrorNote error={page.error} />
      {!page.data ? (
        !page.error && <Loading what="devices" />
      ) : (
        <>
          <TableScroll>
            <table data-testid="devices-table">
              <caption class="sr-only">Devices matching the search, in id order</caption>
              <thead>
                <tr>
                  <th scope="col">Device</th>
                  <th scope="col">Connection</th>
                  <th scope="col">Version</th>
                  <th scope="col">Update status</th>
                  <th scope="col">Desired</th>
                  <th scope="col">Tags</th>
                </tr>
              </thead>
              <tbody>
                {page.data.items.map((d) => (
                  <tr key={d.deviceId}>
                    <td>
                      <DeviceLink id={d.deviceId} />
                    </td>
                    <td>{d.revoked ? <StatusBadge status="REVOKED" /> : <StatusBadge status={d.online ? 'ONLINE' : 'OFFLINE'} />}</td>
                    <td>{d.reported?.version ?? '—'}</td>
                    <td>{d.reported?.status ? <StatusBadge status={d.reported.status} /> : '—'}</td>
                    <td>{d.desired?.version ?? '—'}</td>
                    <td>{d.tags.join(', ')}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </TableScroll>
          {page.data.items.length === 0 && <p class="muted">{next ? 'No match among the devices read so far.' : 'No device matches.'}</p>}
          <nav class="pager" aria-label="Pages of devices">
            {/* a page whose earlier cursors were not kept (past PREV_KEPT pages, or an older URL) goes back to the first */}
            {after && prevList.length === 0 && (
              <button type="button" onClick={() => go(filters, '', [], 1)}>
                First page
              </button>
            )}
            <button type="button" disabled={prevList.length === 0} onClick={() => go(filters, prevList[prevList.length - 1] ?? '', prevList.slice(0, -1), pageNo - 1)}>
              Previous
            </button>
            <span class="muted" aria-live="polite">
              {count(page.data.items.length)} shown{next && page.data.items.length < PAGE ? `, ${count(page.data.scanned)} devices read: more may match` : ''}
            </span>
            <button type="button" disabled={!next} onClick={() => go(filters, next!, [...prevList, after], pageNo + 1)}>
              Next
            </button>
          </nav>
          <p class="muted" data-testid="devices-total">
            {Number.isInteger(pageNo) ? `Page ${count(pageNo)} · ` : ''}
            {total.data ? (total.data.exact ? `${count(total.data.total)} device${total.data.total === 1 ? '' : 's'} ${filterParams.toString() !== '' ? 'match' : 'registered'}` : `at least ${count(total.data.total)} devices match (the first ${count(total.data.scanned)} read)`) : total.error ? `the total cannot be read: ${total.error.message}` : 'counting…'}
          </p>
        </>
      )}
    </>
  );
}

/**
 * The filter form: edited freely until "Search" puts it in the URL, and set again from the URL
 * whenever its filters change there (back, forward, a link). Not remounted for that: the focus
 * stays where it was after a search.
 */
function FilterForm({ filters, onSearch }: { filters: Filters; onSearch: (f: Filters) => void }) {
  const [form, setForm] = useState(filters);
  const inUrl = FILTERS.map((k) => filters[k]).join('\n');
  useEffect(() => setForm(filters), [inUrl]);
  const submit = (e: Event) => {
    e.preventDefault();
    onSearch(form);
  };
  return (
    <form class="filters" role="search" aria-label="Search devices" onSubmit={submit}>
      <div class="field">
        <label for="f-id">Device id contains</label>
        <input id="f-id" value={form.id} onInput={(e) => setForm({ ...form, id: e.currentTarget.value })} />
      </div>
      <div class="field">
        <label for="f-tag">Tag</label>
        <input id="f-tag" value={form.tag} onInput={(e) => setForm({ ...form, tag: e.currentTarget.value })} />
      </div>
      <div class="field">
        <label for="f-group">Group</label>
        <input id="f-group" value={form.group} onInput={(e) => setForm({ ...form, group: e.currentTarget.value })} />
      </div>
      <div class="field">
        <label for="f-version">Version running</label>
        <input id="f-version" value={form.version} placeholder="e.g. 2.0.0" onInput={(e) => setForm({ ...form, version: e.currentTarget.value })} />
      </div>
      <div class="field">
        <label for="f-state">State</label>
        <select id="f-state" value={form.state} onChange={(e) => setForm({ ...form, state: e.currentTarget.value })}>
          <option value="">any</option>
          {STATES.map((s) => (
            <option key={s} value={s}>
              {s}
            </option>
          ))}
        </select>
      </div>
      <div class="field actions">
        <button type="submit">Search</button>
      </div>
    </form>
  );
}
