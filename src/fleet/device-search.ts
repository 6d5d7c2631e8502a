/**
 * Device search for the dashboard: filters by id (substring), tag, group, running version
 * and state (online, offline, updating, failed, revoked), one page at a time in device id
 * order. A selective filter over a large fleet may have to read many devices to fill a
 * page, so one request reads at most `scanBudget` devices and then returns what it found
 * with a `next` cursor: every request stays short, whatever the fleet's size.
 */
import { setImmediate as nextTurn } from 'node:timers/promises';
import { parseReportedSoftware } from '../protocol/software.ts';
import type { DeviceRecord, Page, StateStore } from '../store/state-store.ts';
import { groupQuery, type GroupService } from './group-service.ts';
import { SCAN_BUDGET, subjectOf, type SelectedDevice } from './device-selector.ts';

/** States a search can filter on. */
export const DEVICE_STATES = ['online', 'offline', 'updating', 'failed', 'revoked'] as const;
/** One of DEVICE_STATES. */
export type DeviceState = (typeof DEVICE_STATES)[number];

/** Search filters; all given ones must hold. */
export interface DeviceSearch {
  /** Case-insensitive substring of the device id. */
  id?: string;
  /** A tag the device carries. */
  tag?: string;
  /** A group (static or dynamic) the device belongs to. */
  group?: string;
  /** The version the device reports running. */
  version?: string;
  state?: DeviceState;
  after?: string;
  limit: number;
}

/** One device in the result. */
export interface FoundDevice {
  deviceId: string;
  tags: string[];
  attributes: DeviceRecord['attributes'];
  revoked: boolean;
  online: boolean;
  /** The software the device reports (version, status, error...) or null. */
  reported: Record<string, unknown> | null;
  /** The software it should run, or null. */
  desired: Record<string, unknown> | null;
}

/** A page of results; `scanned` says how many devices were read to find them. */
export interface SearchPage {
  items: FoundDevice[];
  next?: string;
  scanned: number;
}

/**
 * Searches the registry, reading at most `scanBudget` devices per call. A static group is
 * searched through its member list (rows of their own, in device id order like the
 * registry): a group of ten in a fleet of a million is found in one call, where a scan of
 * the registry took a hundred, and its list (up to 100,000 ids) is never read whole.
 */
export async function searchDevices(
  deps: { store: StateStore; groups: GroupService; isOnline: (id: string) => boolean; scanBudget?: number },
  search: DeviceSearch,
): Promise<SearchPage> {
  const { store, isOnline } = deps;
  const budget = deps.scanBudget ?? SCAN_BUDGET;
  const group = search.group ? await deps.groups.get(search.group) : undefined; // NOT_FOUND naming it
  const inGroup = group?.kind === 'dynamic' ? queryMatcher(group.name, group.query!) : undefined;
  const pageOf: (cursor: { after?: string; limit: number }) => Promise<Page<DeviceRecord>> =
    group?.kind === 'static' ? async (cursor) => pageOfDevices(await deps.groups.members(group.name, cursor)) : (cursor) => store.listDevices(cursor);
  const needle = search.id?.toLowerCase();
  const items: FoundDevice[] = [];
  let scanned = 0;
  let cursor = search.after;
  for (;;) {
    const page = await pageOf({ limit: Math.min(1000, Math.max(search.limit, 100)), ...(cursor !== undefined ? { after: cursor } : {}) });
    // the shadows of the page's candidates read together: the store batches the reads of a
    // tick (one query on PostgreSQL), where a read awaited per device cost a round trip each
    const candidate = (d: DeviceRecord) => (!needle || d.deviceId.toLowerCase().includes(needle)) && (!search.tag || d.tags.includes(search.tag));
    const subjects = await Promise.all(page.items.map((d) => (candidate(d) ? subjectOf(store, d, true) : undefined)));
    for (const [n, device] of page.items.entries()) {
      scanned++;
      const s = subjects[n];
      if (!s) continue; // not a candidate
      const online = isOnline(device.deviceId);
      if (inGroup && !inGroup(s)) continue;
      const reported = parseReportedSoftware(s.reported?.software);
      if (search.version && reported?.version !== search.version) continue;
      if (search.state && !inState(search.state, s, online)) continue;
      items.push(found(s, online));
      const last = page.next === undefined && device === page.items[page.items.length - 1];
      if (items.length === search.limit) return last ? { items, scanned } : { items, next: device.deviceId, scanned };
    }
    if (page.next === undefined) return { items, scanned };
    cursor = page.next;
    if (scanned >= budget) return { items, next: cursor, scanned };
  }
}

/** Devices a count reads at most, in pages of `searchDevices`; past it the count says "at least". */
export const COUNT_BUDGET = 100_000;

/** How many devices match a search: `exact` false when the count stopped at its budget (`total` is then a floor). */
export interface SearchCount {
  total: number;
  exact: boolean;
  /** Devices read to count them (0 when counted by the database or a group's size). */
  scanned: number;
}

/**
 * Counts the devices a search's filters match (its `after` and `limit` are not used). Without
 * filters, the registry's count (the database counts, 10,000 rows a query); a static group
 * alone, its size; else the search's own pages, up to `countBudget` devices read (100,000:
 * 2.5 s at most, measured as the search's 0.25 s per 10,000), so a filter over a larger fleet
 * is counted as "at least".
 */
export async function countMatching(
  deps: { store: StateStore; groups: GroupService; isOnline: (id: string) => boolean; scanBudget?: number; countBudget?: number },
  search: Omit<DeviceSearch, 'after' | 'limit'>,
): Promise<SearchCount> {
  const filtered = search.id || search.tag || search.version || search.state;
  if (!filtered && !search.group) {
    let total = 0;
    let after: string | undefined;
    do {
      const page = await deps.store.countDevices({ limit: 10_000, ...(after ? { after } : {}) });
      total += page.counts.registered;
      after = page.next;
      if (after) await nextTurn();
    } while (after);
    return { total, exact: true, scanned: 0 };
  }
  if (!filtered && search.group) {
    const group = await deps.groups.get(search.group); // NOT_FOUND naming it
    if (group.kind === 'static') return { total: group.size ?? group.devices.length, exact: true, scanned: 0 };
  }
  const budget = deps.countBudget ?? COUNT_BUDGET;
  let total = 0;
  let scanned = 0;
  let after: string | undefined;
  for (;;) {
    const page = await searchDevices(deps, { ...search, limit: 1000, ...(after !== undefined ? { after } : {}) });
    total += page.items.length;
    scanned += page.scanned;
    if (page.next === undefined) return { total, exact: true, scanned };
    if (scanned >= budget) return { total, exact: false, scanned };
    after = page.next;
    // a turn of the event loop between pages: the embedded store answers synchronously, and a
    // count of 100,000 devices held the server's one thread (MQTT, the API) for its whole
    // length, 0.6-2.5 s (review of 43af95e)
    await nextTurn();
  }
}

/** A page of selected devices as their records. */
function pageOfDevices(page: Page<SelectedDevice>): Page<DeviceRecord> {
  const items = page.items.map((s) => s.device);
  return page.next ? { items, next: page.next } : { items };
}

/** A dynamic group's membership test: its query. */
function queryMatcher(name: string, query: string): (s: SelectedDevice) => boolean {
  const q = groupQuery(name, query); // 409 naming the group if this release no longer parses it
  return (s) => q.matches(s);
}

function found(s: SelectedDevice, online: boolean): FoundDevice {
  const soft = (o: unknown) => (typeof o === 'object' && o !== null && !Array.isArray(o) ? (o as Record<string, unknown>) : null);
  return {
    deviceId: s.device.deviceId,
    tags: s.device.tags,
    attributes: s.device.attributes,
    revoked: s.device.revoked,
    online,
    reported: soft(s.reported?.software),
    desired: soft(s.desired?.software),
  };
}

function inState(state: DeviceState, s: SelectedDevice, online: boolean): boolean {
  const reported = parseReportedSoftware(s.reported?.software);
  switch (state) {
    case 'online':
      return online;
    case 'offline':
      return !online;
    case 'revoked':
      return s.device.revoked;
    case 'failed':
      return reported?.status === 'FAILURE';
    case 'updating': {
      // under way: a phase of an update reported, or a command the device has not answered
      // yet. A command answered with FAILURE is not: desired software still names the build
      // the device did not take (the job may have ended), and the device is "failed".
      const desired = s.desired?.software as { jobId?: unknown; version?: unknown } | undefined;
      if (!desired || typeof desired !== 'object') return false;
      if (reported === undefined) return true;
      if (reported.status === 'DOWNLOADING' || reported.status === 'VERIFYING' || reported.status === 'INSTALLING') return true;
      if (typeof desired.jobId === 'string') return desired.jobId !== reported.jobId;
      // desired software written without a job id (by hand): its version not running yet
      return desired.version !== reported.version && reported.status !== 'FAILURE';
    }
  }
}
