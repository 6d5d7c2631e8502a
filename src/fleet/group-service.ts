/**
 * Device groups (docs/design.md §4): static groups list their members; dynamic groups are a
 * query over attributes, tags and reported state, evaluated whenever they are used, so a
 * device that starts matching is a member from then on.
 */
import { UpdraftError } from '../errors.ts';
import { ID_RULE, idProblem, isValidId } from '../protocol/topics.ts';
import { ACTIVE_JOB_STATUSES, type GroupRecord, type StateStore } from '../store/state-store.ts';
import { startInSlices } from '../util/in-slices.ts';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { selectPage, type SelectedPage } from './device-selector.ts';
import { parseQuery, parseStoredQuery, type FleetQuery } from './query.ts';
import { descriptionProblem, refuseUnknownFields } from '../protocol/known-fields.ts';

/** What an operator gives to create a group. */
export interface GroupRequest {
  name: string;
  /** Members of a static group. */
  devices?: string[];
  /** The query of a dynamic group. */
  query?: string;
  description?: string;
}

/** Most members a static group lists (larger sets are better described by a query). */
export const MAX_STATIC_MEMBERS = 100_000;

/**
 * Members written per write of a large change. A change is one write of the store's, which
 * every other write of the instance waits behind (PostgreSQL's group commit, SQLite's queue):
 * QA, removing 100,000 took 1.73 s, adding them 2.45 s, in one.
 */
export const MEMBERS_CHUNK = 5_000;

/** Tries of a chunked change that another change of the group interleaved with (see applyInChunks). */
const CHUNKED_TRIES = 3;

/**
 * A group as the operator API shows it: its members counted (`size`), never listed, since a
 * static group holds up to 100,000; they come a page at a time (`members`).
 */
export type GroupView = Omit<GroupRecord, 'devices' | 'size'> & { size: number };

/** The API's view of a group read from the store (or just created). */
export function groupView(g: GroupRecord): GroupView {
  const { devices, size, ...rest } = g;
  return { ...rest, size: size ?? devices.length };
}

/**
 * A dynamic group's stored query; StoredQueryError (409) naming the group when this release no
 * longer takes it (saved by an earlier one deeper than the nesting cap, say).
 */
export function groupQuery(name: string, text: string): FleetQuery {
  return parseStoredQuery(text, `the query of group ${name}`, 'create the group again with a query this release takes (a continuous job that targets it must be canceled before the group can be deleted)');
}

/** Creates, changes and reads groups. */
export class GroupService {
  private readonly deps: { store: StateStore; now?: () => number; onChange?: (name: string) => void };

  constructor(deps: { store: StateStore; now?: () => number; onChange?: (name: string) => void }) {
    this.deps = deps;
  }

  private now(): number {
    return this.deps.now ? this.deps.now() : Date.now();
  }

  /** Creates a group; BAD_REQUEST for a bad name, query or member list, NOT_FOUND for unregistered members, CONFLICT for a taken name. */
  async create(req: GroupRequest): Promise<GroupRecord> {
    if (typeof req !== 'object' || req === null || Array.isArray(req)) throw new UpdraftError('BAD_REQUEST', 'body must be an object {name, devices | query, description?}');
    // a misspelt field ("decription", "devicse") would be dropped without a word
    refuseUnknownFields(req, ['name', 'devices', 'query', 'description']);
    if (typeof req.name !== 'string') throw new UpdraftError('BAD_REQUEST', `group name must be a string of ${ID_RULE}`);
    const nameDefect = idProblem('group name', req.name);
    if (nameDefect !== undefined) throw new UpdraftError('BAD_REQUEST', nameDefect);
    if ((req.devices === undefined) === (req.query === undefined)) throw new UpdraftError('BAD_REQUEST', 'give either devices (a static group) or query (a dynamic group)');
    // a job's bound and message (jobs/job-spec.ts): a group is listed with its description
    const description = descriptionProblem(req.description);
    if (description) throw new UpdraftError('BAD_REQUEST', description);
    const now = this.now();
    const group: GroupRecord = { name: req.name, kind: req.query !== undefined ? 'dynamic' : 'static', devices: [], createdAt: now, updatedAt: now, version: 1 };
    if (req.description) group.description = req.description;
    if (req.query !== undefined) {
      if (typeof req.query !== 'string') throw new UpdraftError('BAD_REQUEST', 'query must be a string');
      parseQuery(req.query);
      group.query = req.query;
    } else {
      group.devices = await this.checkMembers(req.devices);
    }
    const created = group.devices.length <= MEMBERS_CHUNK ? (await this.deps.store.createGroup(group), group) : await this.createInChunks(group);
    this.deps.onChange?.(group.name);
    return created;
  }

  /**
   * Creates a static group of more than MEMBERS_CHUNK members (all checked registered) as a
   * change written in chunks: in one transaction the whole list was one write of the store's,
   * which every other write of the instance waited behind. The group goes in with its first
   * chunk (a taken name refused there, nothing written), the rest is added by applyInChunks
   * (the group's version raised by one per chunk; below the bound, as the list is). Readers
   * meanwhile may see part of the members. A failure part way deletes the group again, so
   * that the creation can be sent again, but only the group this creation made, as nothing
   * else has changed it (`leftByFailure`): not one another request changed or deleted and
   * created again meanwhile, nor one a continuous job created meanwhile targets (as delete()
   * refuses); the engine is told (onChange) as for a delete. Otherwise, or if that delete fails
   * too (the database lost), the group stays with part of its members: adding them completes
   * it. Resolves with the group as stored (its version, `size`) and the whole list.
   */
  private async createInChunks(group: GroupRecord): Promise<GroupRecord> {
    const [first = [], ...rest] = chunked(group.devices);
    await this.deps.store.createGroup({ ...group, devices: first });
    const written = { version: group.version, alone: true };
    try {
      const changed = await this.applyInChunks(group.name, group.version, rest.flat(), [], written);
      return { ...changed, devices: group.devices };
    } catch (err) {
      if (written.alone && (await this.leftByFailure(group, written.version).catch(() => false))) {
        if (await this.deps.store.deleteGroup(group.name).catch(() => false)) this.deps.onChange?.(group.name);
      }
      throw err;
    }
  }

  /**
   * Whether the group named `made.name` is still the one a creation that failed part way made,
   * as it left it (created at its stamp, at the `version` its last chunk wrote, the caller
   * having seen no other change between its chunks), and no
   * unfinished continuous job targets it: only such a group is deleted again. The store has no
   * conditional delete: a change in the moment between this read and the delete is lost.
   */
  private async leftByFailure(made: GroupRecord, version: number): Promise<boolean> {
    const now = await this.deps.store.getGroup(made.name, { omitDevices: true });
    if (!now || now.createdAt !== made.createdAt || now.version !== version) return false;
    return (await this.continuousJobsOf(made.name)).length === 0;
  }

  /** A group without its member list (`size` counts it); NOT_FOUND naming it. */
  async get(name: string): Promise<GroupRecord> {
    const g = await this.deps.store.getGroup(name, { omitDevices: true });
    if (!g) throw new UpdraftError('NOT_FOUND', `group ${name} does not exist; list groups with: updraft group list`);
    return g;
  }

  /** Every group, without member lists. */
  list(): Promise<GroupRecord[]> {
    return this.deps.store.listGroups();
  }

  /** Deletes a group (jobs that targeted it keep their executions). */
  async delete(name: string): Promise<void> {
    // a continuous job keeps adding the group's devices: deleted, and created again for other
    // devices, the group would roll the job out to them
    const jobs = await this.continuousJobsOf(name);
    if (jobs.length > 0) throw new UpdraftError('CONFLICT', `group ${name} is a target of continuous jobs that are not finished (${jobs.slice(0, 10).join(', ')}${jobs.length > 10 ? ', ...' : ''}): cancel them first (updraft job cancel <jobId>)`);
    if (!(await this.deps.store.deleteGroup(name))) throw new UpdraftError('NOT_FOUND', `group ${name} does not exist`);
    this.deps.onChange?.(name);
  }

  /** The unfinished continuous jobs that target the group (a snapshot job's targets were fixed at its creation). */
  private async continuousJobsOf(name: string): Promise<string[]> {
    const found: string[] = [];
    let after: string | undefined;
    for (;;) {
      const page = await this.deps.store.listJobs({ status: [...ACTIVE_JOB_STATUSES], limit: 500, ...(after ? { after } : {}) });
      for (const job of page.items) {
        const spec = job.spec as { type?: string; targets?: { groups?: unknown } } | undefined;
        if (spec?.type === 'continuous' && Array.isArray(spec.targets?.groups) && spec.targets.groups.includes(name)) found.push(job.jobId);
      }
      if (!page.next) return found;
      after = page.next;
    }
  }

  /**
   * Adds and removes members of a static group, writing only the members named (a device in
   * both lists ends a member); resolves with the group without its list. NOT_FOUND for an
   * unknown group or device to add, CONFLICT for a dynamic group, BAD_REQUEST past
   * MAX_STATIC_MEMBERS; nothing is written then. A change of more than MEMBERS_CHUNK members
   * is written in chunks (applyInChunks), one transaction each, so the instance's other
   * writes go in between.
   */
  async changeMembers(name: string, add: unknown, remove: unknown): Promise<GroupRecord> {
    if (add !== undefined && !Array.isArray(add)) throw new UpdraftError('BAD_REQUEST', 'add must be an array of device ids');
    if (remove !== undefined && (!Array.isArray(remove) || remove.some((d) => typeof d !== 'string'))) throw new UpdraftError('BAD_REQUEST', 'remove must be an array of device ids');
    if (add === undefined && remove === undefined) throw new UpdraftError('BAD_REQUEST', 'give add and/or remove: arrays of device ids');
    const head = await this.get(name); // an unknown group is named before its devices
    const toAdd = add === undefined ? [] : await this.checkMembers(add);
    const adding = new Set(toAdd);
    // a device in both lists ends a member: it is only added, never removed on the way
    const toRemove = [...new Set((remove as string[] | undefined) ?? [])].filter((d) => !adding.has(d)).sort();
    // one transaction when small, or when the bound could refuse it: its refusal must leave
    // the group as it was (whether it would pass the bound depends on which are members already)
    const mayPassBound = (head.size ?? 0) + toAdd.length > MAX_STATIC_MEMBERS;
    const changed =
      toAdd.length + toRemove.length <= MEMBERS_CHUNK || mayPassBound
        ? await this.deps.store.changeGroupMembers(name, { add: toAdd, remove: toRemove, updatedAt: this.now(), maxMembers: MAX_STATIC_MEMBERS })
        : await this.applyInChunks(name, head.version, toAdd, toRemove);
    this.deps.onChange?.(name);
    return changed;
  }

  /**
   * Writes a large change MEMBERS_CHUNK members at a time, removals first, then additions: the
   * group's size only falls, then only grows, to a final size checked under the bound before,
   * so no chunk is refused by it. Readers meanwhile (a page of members, a job created) may see
   * part of the change. Each write raises the group's version by one: a version that moved by
   * more between two chunks means another change of the group came in between, and the whole
   * change is written again (each of its members' outcome is then this change's, as if it had
   * come last), at most CHUNKED_TRIES times. A failure part way (the database down) leaves
   * part of the change written: writing it again completes it (adding a member or removing a
   * non-member changes nothing). `written`, when given, follows the version each chunk wrote,
   * and whether every chunk so far raised it by one alone (no other change in between).
   */
  private async applyInChunks(name: string, version: number, toAdd: string[], toRemove: string[], written?: { version: number; alone: boolean }): Promise<GroupRecord> {
    let last = version;
    let changed: GroupRecord | undefined;
    for (let attempt = 1; ; attempt++) {
      let interleaved = false;
      const chunks = [...chunked(toRemove).map((remove) => ({ add: [] as string[], remove })), ...chunked(toAdd).map((add) => ({ add, remove: [] as string[] }))];
      for (const chunk of chunks) {
        changed = await this.deps.store.changeGroupMembers(name, { ...chunk, updatedAt: this.now(), maxMembers: MAX_STATIC_MEMBERS });
        if (changed.version !== last + 1) interleaved = true;
        last = changed.version;
        if (written) Object.assign(written, { version: last, alone: written.alone && !interleaved });
        await nextTurn(); // the embedded store writes synchronously: let other work through
      }
      if (!interleaved || attempt === CHUNKED_TRIES) return changed!;
    }
  }

  /**
   * A page of a group's members (device id order); a dynamic group's reads at most SCAN_BUDGET
   * devices, so it may be short with `next`. `scanned`: the devices read for it, as
   * selectPage counts them (a static group's: its members listed on the page).
   */
  async members(name: string, options: { after?: string; limit: number }): Promise<SelectedPage> {
    const g = await this.get(name);
    if (g.kind === 'dynamic') return selectPage(this.deps.store, groupQuery(name, g.query!), options);
    const ids = await this.deps.store.listGroupMembers(name, options);
    // read in one tick (one query on PostgreSQL); a member is registered (devices are revoked, never deleted)
    const devices = await Promise.all(ids.items.map((id) => this.deps.store.getDevice(id)));
    const items = devices.filter((d) => d !== undefined).map((device) => ({ device }));
    return { items, ...(ids.next ? { next: ids.next } : {}), scanned: ids.items.length };
  }

  /** Checks that each device to add is registered; resolves with them sorted, without duplicates. */
  private async checkMembers(devices: unknown): Promise<string[]> {
    if (!Array.isArray(devices)) throw new UpdraftError('BAD_REQUEST', 'devices must be an array of device ids');
    if (devices.length > MAX_STATIC_MEMBERS) throw new UpdraftError('BAD_REQUEST', `a static group holds at most ${MAX_STATIC_MEMBERS} devices; use a dynamic group`);
    const ids = [...new Set(devices)];
    for (const d of ids) if (typeof d !== 'string' || !isValidId(d)) throw new UpdraftError('BAD_REQUEST', `"${String(d)}" is not a valid device id`);
    // read 500 at a time with a turn of the event loop between: the embedded store answers
    // synchronously, and 100,000 reads in one go held the server for 1.9 s (measured)
    const found = await startInSlices(ids as string[], 500, (d) => this.deps.store.getDevice(d));
    const missing = found.findIndex((d) => d === undefined);
    if (missing >= 0) {
      const d = ids[missing] as string;
      throw new UpdraftError('NOT_FOUND', `device ${d} is not registered; register it with: updraft device register ${d}`);
    }
    return (ids as string[]).sort();
  }
}

/** `ids` in slices of MEMBERS_CHUNK. */
function chunked(ids: string[]): string[][] {
  const out: string[][] = [];
  for (let i = 0; i < ids.length; i += MEMBERS_CHUNK) out.push(ids.slice(i, i + MEMBERS_CHUNK));
  return out;
}
