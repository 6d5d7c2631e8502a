/**
 * Resolves a job's targets (device ids, groups, a query) into the set of device ids, in id
 * order. Without a query or a dynamic group nothing but the named devices is read; with one,
 * the registry is scanned page by page once, whatever the number of queries.
 */
import { setImmediate as nextTurn } from 'node:timers/promises';
import { UpdraftError } from '../errors.ts';
import { scanDevices, subjectOf } from '../fleet/device-selector.ts';
import { groupQuery } from '../fleet/group-service.ts';
import { parseStoredQuery, StoredQueryError, type FleetQuery } from '../fleet/query.ts';
import type { DeviceRecord, StateStore } from '../store/state-store.ts';
import type { JobTargets } from './job-spec.ts';

/** A job's stored targets.query; StoredQueryError (409) when this release no longer takes it. */
function jobQuery(text: string): FleetQuery {
  return parseStoredQuery(text, 'targets.query', 'the job takes no new devices (those it has go on); cancel it and create it again with a query this release takes');
}

/**
 * Why the queries of `targets` (its own, its dynamic groups') no longer parse, as the first
 * one's StoredQueryError says it; undefined when they all do. A few reads: the groups without
 * their member lists.
 */
export async function targetsProblem(store: StateStore, targets: JobTargets): Promise<string | undefined> {
  try {
    if (targets.query !== undefined) jobQuery(targets.query);
    for (const name of targets.groups ?? []) {
      const g = await store.getGroup(name, { omitDevices: true });
      if (g?.kind === 'dynamic' && g.query) groupQuery(name, g.query);
    }
  } catch (err) {
    if (err instanceof StoredQueryError) return err.message;
    throw err;
  }
  return undefined;
}

/**
 * The target device ids. `strict` (at creation): unknown devices or groups are NOT_FOUND
 * and a named revoked device is a CONFLICT; otherwise (continuous re-scans) they are skipped.
 * Revoked devices selected by a group or query are always left out.
 */
export async function resolveTargets(store: StateStore, targets: JobTargets, strict: boolean): Promise<string[]> {
  const listed = new Set<string>();
  const queries: FleetQuery[] = [];
  const named = targets.devices ?? [];
  for (const [n, device] of (await readDevices(store, named)).entries()) {
    const d = named[n]!;
    if (!device) {
      if (strict) throw new UpdraftError('NOT_FOUND', `device ${d} is not registered; register it with: updraft device register ${d}`);
      continue;
    }
    if (device.revoked) {
      if (strict) throw new UpdraftError('CONFLICT', `device ${d} is revoked`);
      continue;
    }
    listed.add(d);
  }
  const members = new Set<string>();
  for (const name of targets.groups ?? []) {
    const g = await store.getGroup(name);
    if (!g) {
      if (strict) throw new UpdraftError('NOT_FOUND', `group ${name} does not exist; list groups with: updraft group list`);
      continue;
    }
    if (g.kind === 'dynamic' && g.query) queries.push(groupQuery(name, g.query));
    else for (const d of g.devices) members.add(d);
  }
  if (targets.query !== undefined) queries.push(jobQuery(targets.query));

  const out = new Set(listed);
  if (queries.length === 0) {
    const others = [...members].filter((d) => !out.has(d));
    for (const device of await readDevices(store, others)) if (device && !device.revoked) out.add(device.deviceId);
    return [...out].sort();
  }
  const withShadow = queries.some((q) => q.needsShadow);
  await scanDevices(
    store,
    (s) => !s.device.revoked && (members.has(s.device.deviceId) || queries.some((q) => q.matches(s))),
    withShadow,
    (batch) => {
      for (const s of batch) out.add(s.device.deviceId);
    },
  );
  return [...out].sort();
}

/**
 * The devices `ids`, in order, read a thousand at a time: the reads of one chunk are
 * concurrent (one query on PostgreSQL, whose store batches the point reads of a tick).
 */
async function readDevices(store: StateStore, ids: readonly string[]): Promise<(DeviceRecord | undefined)[]> {
  const out: (DeviceRecord | undefined)[] = [];
  for (let i = 0; i < ids.length; i += 1_000) {
    out.push(...(await Promise.all(ids.slice(i, i + 1_000).map((d) => store.getDevice(d)))));
    await nextTurn(); // the embedded store's reads are synchronous: let device traffic through
  }
  return out;
}

/**
 * The devices a spec names, as a set made once per list: a continuous job checks every device
 * that comes online, and a search of a list of 60,000 took 0.085 ms each time (measured). The
 * rollout engine keeps each active job's spec, so the list, and its set, live as long as it.
 */
const namedSets = new WeakMap<readonly string[], Set<string>>();
function namedSet(devices: readonly string[]): Set<string> {
  let set = namedSets.get(devices);
  if (!set) namedSets.set(devices, (set = new Set(devices)));
  return set;
}

/**
 * Whether one device is among `targets` now (registered, not revoked, and named, a member
 * of a group or matched by a query): a continuous job's check of a device that comes online,
 * a few reads instead of a scan of the registry.
 */
export async function targetsInclude(store: StateStore, targets: JobTargets, deviceId: string): Promise<boolean> {
  const device = await store.getDevice(deviceId);
  if (!device || device.revoked) return false;
  if (targets.devices && namedSet(targets.devices).has(deviceId)) return true;
  const queries: FleetQuery[] = [];
  for (const name of targets.groups ?? []) {
    // a static group can list 100,000 devices: ask for this one, not for the list
    const g = await store.getGroup(name, { omitDevices: true });
    if (g?.kind === 'dynamic' && g.query) queries.push(groupQuery(name, g.query));
    else if (g?.kind === 'static' && (await store.isGroupMember(name, deviceId))) return true;
  }
  if (targets.query !== undefined) queries.push(jobQuery(targets.query));
  if (queries.length === 0) return false;
  const subject = await subjectOf(store, device, queries.some((q) => q.needsShadow));
  return queries.some((q) => q.matches(subject));
}
