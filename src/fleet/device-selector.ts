/**
 * Selects registered devices with a fleet query, paging through the registry (and, when
 * the query reads shadow state, each device's classic shadow) so that a large fleet is never
 * loaded at once; a page for the API reads at most SCAN_BUDGET devices.
 */
import { setImmediate as nextTurn } from 'node:timers/promises';
import type { JsonObject } from '../protocol/json.ts';
import type { DeviceRecord, Page, StateStore } from '../store/state-store.ts';
import type { FleetQuery } from './query.ts';

/** A device with the parts of its shadow queries read. */
export interface SelectedDevice {
  device: DeviceRecord;
  reported?: JsonObject;
  desired?: JsonObject;
}

/** Registry pages read per step of a scan. */
const SCAN_PAGE = 1000;

/**
 * Loads the shadow state a query needs. Callers over many devices start the reads of a page
 * at once (Promise.all), so that the PostgreSQL store answers them in one query.
 */
export async function subjectOf(store: StateStore, device: DeviceRecord, withShadow: boolean): Promise<SelectedDevice> {
  if (!withShadow) return { device };
  const shadow = await store.getShadow(device.deviceId, '');
  if (!shadow || shadow.deleted) return { device };
  return { device, reported: shadow.state.reported, desired: shadow.state.desired };
}

/**
 * Calls `onBatch` with successive batches of registered devices for which `match` holds,
 * in device id order.
 */
export async function scanDevices(
  store: StateStore,
  match: (s: SelectedDevice) => boolean,
  withShadow: boolean,
  onBatch: (batch: SelectedDevice[]) => Promise<void> | void,
): Promise<void> {
  let after: string | undefined;
  do {
    const page = await store.listDevices({ limit: SCAN_PAGE, ...(after !== undefined ? { after } : {}) });
    const batch: SelectedDevice[] = [];
    // a page's shadows read together: the store batches the reads of one tick (one query on
    // PostgreSQL); awaited one by one, each device cost a round trip (QA: 54,078 for six requests)
    for (const s of await Promise.all(page.items.map((d) => subjectOf(store, d, withShadow)))) if (match(s)) batch.push(s);
    if (batch.length > 0) await onBatch(batch);
    after = page.next;
    // the embedded store answers synchronously, so without this a scan never lets the event
    // loop turn: 100,000 devices held every device's messages for 1.2 s (a million: seconds)
    await nextTurn();
  } while (after !== undefined);
}

/**
 * Most devices one page reads (the same bound as `/fleet/search`, device-search.ts): a query
 * that matches few devices of a large fleet would otherwise read the whole registry, and each
 * device's shadow, in one request.
 */
export const SCAN_BUDGET = 10_000;

/** A page of selected devices and how many devices were read to find them. */
export interface SelectedPage extends Page<SelectedDevice> {
  /** Devices read (matched or not) for this page: at most the scan budget. */
  scanned: number;
}

/**
 * One page of the devices a query selects (all devices without a query), in device id order.
 * It reads at most `scanBudget` devices (SCAN_BUDGET): past that it answers with what it found,
 * which may be fewer than `limit` or none, and `next`, the last device read, so the caller
 * goes on from there. `next` is absent only once the registry's end was read. `scanned` says
 * how many devices it read, so that a short or empty page still shows progress.
 */
export async function selectPage(store: StateStore, query: FleetQuery | undefined, options: { after?: string; limit: number; scanBudget?: number }): Promise<SelectedPage> {
  const budget = Math.max(1, options.scanBudget ?? SCAN_BUDGET);
  const items: SelectedDevice[] = [];
  let after = options.after;
  let scanned = 0;
  for (;;) {
    const page = await store.listDevices({ limit: Math.min(Math.max(options.limit, 100), SCAN_PAGE, budget - scanned), ...(after !== undefined ? { after } : {}) });
    // read together, as scanDevices does; a page that fills `limit` early read the rest of its
    // shadows for nothing, at most max(limit, 100) of them and in the same query
    const subjects = await Promise.all(page.items.map((d) => subjectOf(store, d, true)));
    for (const [n, device] of page.items.entries()) {
      scanned++;
      const s = subjects[n]!;
      if (query && !query.matches(s)) continue;
      items.push(s);
      if (items.length === options.limit) {
        // more may follow unless this was the registry's last device
        const isLast = page.next === undefined && device === page.items[page.items.length - 1];
        return isLast ? { items, scanned } : { items, next: device.deviceId, scanned };
      }
    }
    if (page.next === undefined) return { items, scanned };
    after = page.next;
    if (scanned >= budget) return { items, next: after, scanned };
  }
}
