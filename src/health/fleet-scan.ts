/**
 * The server's side of the device checks (findings.ts): every check's query answered in one
 * read of the fleet, a registry page (1,000 devices and their shadows) at a time with a turn of
 * the event loop between pages (fleet/device-selector.ts scanDevices), so that counting a large
 * fleet never holds the server's one thread for long. Each query is counted in full.
 */
import { scanDevices } from '../fleet/device-selector.ts';
import { parseQuery } from '../fleet/query.ts';
import type { StateStore } from '../store/state-store.ts';
import type { DeviceCheck, NamedDevice, Selected } from './findings.ts';

/** How many of the devices read each check's query selected, in the order of `checks`; `scanned`: devices read. */
export async function selectForChecks(store: StateStore, checks: readonly DeviceCheck[]): Promise<{ selected: Selected[]; scanned: number }> {
  const queries = checks.map((c) => parseQuery(c.query));
  const selected: Selected[] = checks.map(() => ({ first: [], more: false, count: 0, set: 0, firstSet: [] }));
  let scanned = 0;
  await scanDevices(
    store,
    (s) => {
      scanned++;
      for (const [i, q] of queries.entries()) {
        if (!q.matches(s)) continue;
        const r = selected[i]!;
        const agent = s.reported?.agent as { certificateRenewalError?: unknown } | undefined;
        const d: NamedDevice = { deviceId: s.device.deviceId, ...(s.device.revoked ? { revoked: true } : {}), ...(typeof agent?.certificateRenewalError === 'string' ? { renewalError: agent.certificateRenewalError } : {}) };
        if (checks[i]!.apartRevoked && s.device.revoked) {
          r.set++;
          if (r.firstSet.length < 5) r.firstSet.push(d);
        } else {
          r.count!++;
          if (r.first.length < 5) r.first.push(d);
          else r.more = true;
        }
      }
      return false;
    },
    true,
    () => {},
  );
  return { selected, scanned };
}
