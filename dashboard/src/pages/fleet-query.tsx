/**
 * The devices a fleet query selects (`/fleet?query=…`, `GET /fleet/devices`): where a Health
 * finding links to. A page of 50 at a time; one request reads at most 10,000 devices, so a page
 * may come short with more to read ("Next" goes on from where it stopped).
 */
import { DeviceLink } from '../components/device-link.tsx';
import { ErrorNote, Loading } from '../components/error-note.tsx';
import { count } from '../format.ts';
import { useApi } from '../hooks.ts';
import { Link, useLocation } from '../router.tsx';

interface QueryPage {
  items: { deviceId: string; revoked?: boolean; online?: boolean; reported?: { version?: string } | null }[];
  next?: string;
  scanned: number;
}

export function FleetQueryPage() {
  const { query } = useLocation();
  const q = query.get('query') ?? '';
  const after = query.get('after') ?? '';
  const page = useApi<QueryPage>(q ? `/fleet/devices?query=${encodeURIComponent(q)}&limit=50${after ? `&after=${encodeURIComponent(after)}` : ''}` : null);
  return (
    <>
      <h1>Devices by query</h1>
      <p>
        <code data-testid="fleet-query">{q || 'no query given'}</code>
      </p>
      <ErrorNote error={page.error} />
      {q &&
        (!page.data ? (
          !page.error && <Loading what="devices" />
        ) : (
          <>
            <p class="muted">
              {count(page.data.items.length)} device{page.data.items.length === 1 ? '' : 's'} on this page ({count(page.data.scanned)} read)
            </p>
            <ul data-testid="fleet-query-devices">
              {page.data.items.map((d) => (
                <li key={d.deviceId}>
                  <DeviceLink id={d.deviceId} />
                  {d.revoked && ' (revoked)'}
                  {typeof d.reported?.version === 'string' && <span class="muted"> runs {d.reported.version}</span>}
                </li>
              ))}
            </ul>
            {page.data.next !== undefined && <Link href={`/fleet?query=${encodeURIComponent(q)}&after=${encodeURIComponent(page.data.next)}`}>Next</Link>}
          </>
        ))}
    </>
  );
}
