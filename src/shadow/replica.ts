/**
 * The device state replica (the "shadow" service): pattern steps 4, 8 and 9.
 *
 * Takes requests from the broker (`state/{id}/update|get|delete`, named shadows too) or from
 * the operator API, serializes them per shadow, commits each change durably before
 * answering, then publishes `accepted`, `documents` and, while desired differs from
 * reported, `delta`. Every failure is answered on `.../rejected` with a code and never
 * touches stored state. Requests of one device never wait for or affect another's.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { UpdraftError, asUpdraftError, publicMessage } from '../errors.ts';
import type { EventBus } from '../events/event-bus.ts';
import { OPERATOR_USERNAME } from '../broker/authenticator.ts';
import type { InboundMessage, MessageBus, Sender } from '../broker/message-bus.ts';
import { isJsonObject, type JsonObject } from '../protocol/json.ts';
import {
  parseSimpleRequest,
  parseUpdateRequest,
  refuseAwsEncoding,
  salvageClientToken,
  type DeleteAccepted,
  type DocumentsMessage,
  type Rejection,
  type ShadowDocument,
  type ShadowLimits,
  type UpdateRequest,
} from '../protocol/shadow-messages.ts';
import { checkReportedSoftware, parseDesiredSoftware, type DesiredSoftware, type SoftwareCommand } from '../protocol/software.ts';
import { answerTopic, parseRequestTopic, type ShadowOperation, type ShadowRef, type TopicRef } from '../protocol/topics.ts';
import type { RevokedDevices } from '../registry/revoked-devices.ts';
import type { ShadowRecord, StateStore } from '../store/state-store.ts';
import type { Logger } from '../util/logger.ts';
import { ThrottledLog } from '../util/log-throttle.ts';
import { rememberLru } from '../util/lru.ts';
import { RejectionLog } from './rejection-log.ts';
import { applyUpdate, deltaMessage, fullDocument, snapshot, tombstone } from './document.ts';
import { KeyedQueue } from './keyed-queue.ts';

/** What the replica counted: MQTT shadow requests received, and those rejected by code. */
export interface ShadowStats {
  requests: number;
  rejections: Map<number, number>;
}

/** Turns the desired software of a device into its update command (adds a signed URL). */
export type CommandIssuer = (deviceId: string, software: DesiredSoftware) => SoftwareCommand | Promise<SoftwareCommand>;

/** What the replica needs. */
export interface ReplicaDeps {
  store: StateStore;
  bus: MessageBus;
  events: EventBus;
  logger: Logger;
  limits: ShadowLimits;
  /** Signs download URLs into software deltas; without it deltas carry no URL. */
  issueCommand?: CommandIssuer;
  /** Requests waiting or running across all shadows before new ones get 429. */
  maxPending: number;
  /**
   * Named shadows one device may have (`shadow.maxNamedShadows`, DEFAULT_MAX_NAMED_SHADOWS
   * when absent); creating one more is refused with 403. Its classic shadow is not counted.
   */
  maxNamedShadows?: number;
  /**
   * Whether a device id is registered (the registry). A sender other than a device (an
   * operator over MQTT, the rollout engine, the API) may create a shadow only for a
   * registered id: a shadow written for an id no device has would be inherited, version,
   * desired state and update command, by the device registered later under it. Asked only
   * when such a sender would create a shadow, or finds none to get or delete: a device's own
   * requests (it authenticated; a revoked one, which an external broker may admit by its
   * certificate, is refused from memory: registry/revoked-devices.ts) and updates of a shadow
   * that exists cost nothing more. Without it every id is taken (unit tests of the replica alone).
   */
  isRegistered?: (deviceId: string) => Promise<boolean>;
  /**
   * The revoked and deleted devices held in memory (registry/revoked-devices.ts, started by the
   * server before the replica), against which device senders are checked: given behind an
   * external broker, which may admit a revoked device by its certificate. The embedded broker
   * refuses it at CONNECT and closes its connection at the revocation, so there it is absent: it
   * would cost a scan of every device at each start and a store read per registration on every
   * instance (a bulk registration of 100,000), for nothing.
   */
  withdrawn?: RevokedDevices;
  /** Seconds since the epoch (injectable for tests). */
  now?: () => number;
}

/**
 * Retries of the read-modify-write when another writer (instance) wins the race. After the
 * first, each waits a jittered moment that doubles up to RACE_BACKOFF_MAX_MS: the winner writes
 * from its cache while the loser reads the store first, so with requests of its own queued
 * for the same shadow the winner took every immediate retry (seen: an unconditional update
 * refused after losing 6 races in a row, two instances each handling half of 10 updates of
 * one shadow in flight).
 */
const MAX_STORE_RETRIES = 10;
const RACE_BACKOFF_MAX_MS = 64;
/** Shadows kept in memory for the update path (LRU); each costs about 1-2 KB. */
const CACHE_ENTRIES = 50_000;
/** Desired (and reported) keys an operator's audit line names (`auditOperator`); the others are counted. */
const AUDIT_KEYS = 20;
/** Default of `maxNamedShadows` (the schema's `shadow.maxNamedShadows`). */
export const DEFAULT_MAX_NAMED_SHADOWS = 100;

/** The device shadow service. */
export class ShadowReplica {
  private readonly deps: ReplicaDeps;
  private readonly queue: KeyedQueue;
  /**
   * Creations of named shadows, one at a time per device: the count and the write of one
   * creation are not interleaved with another's, whose shadows (other keys of `queue`) run
   * concurrently. Unbounded: each waiting creation already holds a place in `queue`.
   */
  private readonly creations = new KeyedQueue(Number.POSITIVE_INFINITY);
  private stopped = true;
  /**
   * Last committed record per shadow, for the read-modify-write of updates. Safe with several
   * instances: a stale entry makes the conditional write fail, and the retry reads the store;
   * a refusal computed from an entry is dropped with it and computed again from the store
   * (applyUpdate); a get that reads a newer record replaces the entry (readDocument).
   * Records in it are never mutated (an update builds new objects where it writes, copy on write).
   */
  private readonly cache = new Map<string, ShadowRecord>();
  private offDisruption: (() => void) | undefined;
  /**
   * Revoked (and deleted) devices, in memory: their requests are refused here. The embedded
   * broker refuses such a device at CONNECT, but an external Mosquitto with certificate logins
   * (mosquitto-config --updraft-ca) admits it by its certificate, whatever the registry says.
   */
  private readonly revoked: RevokedDevices | undefined;
  /** MQTT requests received, and those rejected by code (GET /api/v1/metrics). */
  readonly stats: ShadowStats = { requests: 0, rejections: new Map() };

  /** Requests failed because a dependency is down: one line per 30 s (reject). */
  private readonly unavailableLog: ThrottledLog;
  /** Requests refused with a 4xx: a line per device and code a minute at most (rejection-log.ts). */
  private readonly rejectionLog: RejectionLog;

  constructor(deps: ReplicaDeps) {
    this.deps = deps;
    this.queue = new KeyedQueue(deps.maxPending);
    this.unavailableLog = new ThrottledLog(deps.logger);
    this.rejectionLog = new RejectionLog(deps.logger);
    this.revoked = deps.withdrawn;
  }

  /** Starts consuming requests from the bus. */
  async start(): Promise<void> {
    this.stopped = false;
    // a database that may have gone back (a restore, a failover to a replica behind) makes
    // every cached record suspect: its version can be reached again with other content, and a
    // write built on the cached copy would pass its version check and bring old content back
    // (QA, 2026-12-06: a vanished job's command written again into shadows after a restore)
    this.offDisruption = this.deps.store.onDisruption?.(() => this.cache.clear());
    this.deps.bus.onRequest((msg) => this.submit(msg));
  }

  /** Stops taking requests and waits for those already accepted to finish. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.deps.bus.onRequest(() => {});
    this.offDisruption?.();
    await this.queue.drain();
    this.unavailableLog.close();
    this.rejectionLog.close();
  }

  private now(): number {
    return this.deps.now ? this.deps.now() : Math.floor(Date.now() / 1000);
  }

  /**
   * Queues one MQTT request; never throws, answers on the rejected topic instead. Resolves
   * (never rejects) once it is handled: recorded (committed) and its answers handed to the
   * bus, or rejected. The embedded broker acknowledges the request then, so the PUBACK
   * leaves with the answers; the request keeps its place in the queue until the bus has
   * taken them (backpressure).
   */
  submit(msg: InboundMessage): Promise<void> {
    const req = parseRequestTopic(msg.topic);
    if (!req || this.stopped) return Promise.resolve();
    this.stats.requests++;
    // a revoked device's request, come through an external broker that admitted it by its
    // certificate (a map lookup: no store read on the hot path); 403, as for any refused access
    const withdrawn = msg.sender.kind === 'device' ? this.revoked?.refusal(msg.sender.id) : undefined;
    if (withdrawn !== undefined) {
      const refused = new UpdraftError('FORBIDDEN', withdrawn);
      return new Promise<void>((answered) => {
        void this.reject(req, req.op, refused, salvageClientToken(msg.payload), answered).finally(() => answered());
      });
    }
    if (req.nameProblem !== undefined) {
      // no shadow can bear this name: refused on the request's own topics before it takes a
      // place in a queue or reaches the store
      const refused = new UpdraftError('BAD_REQUEST', req.nameProblem);
      return new Promise<void>((answered) => {
        void this.reject(req, req.op, refused, salvageClientToken(msg.payload), answered).finally(() => answered());
      });
    }
    const ref: ShadowRef = { deviceId: req.deviceId, name: req.name };
    return new Promise<void>((answered) => {
      this.queue
        .run(key(ref), () => this.handle(ref, req.op, msg.payload, msg.sender, answered, msg.family))
        .catch((err: unknown) => this.reject(ref, req.op, asUpdraftError(err), salvageClientToken(msg.payload), answered))
        .finally(() => answered());
    });
  }

  /** Handles one request; `answered` is called once its answers are handed to the bus. */
  private async handle(ref: ShadowRef, op: ShadowOperation, payload: Buffer, sender: Sender, answered: () => void, family?: 'aws'): Promise<void> {
    try {
      if (family === 'aws') refuseAwsEncoding(payload, this.deps.limits);
      if (op === 'update') {
        // the operator's writes over MQTT are audited; a device's own requests (the hot path) pay this one comparison, no more
        await this.applyUpdate(ref, parseUpdateRequest(payload, this.deps.limits, ref), sender, answered, sender.kind === 'operator');
      } else if (op === 'get') {
        const req = parseSimpleRequest(payload, this.deps.limits, ref, 'get');
        const doc = await this.readDocument(ref, req.clientToken, true, sender);
        const sent = this.publish(answerTopic(ref, 'get', 'accepted'), doc);
        answered();
        await sent;
        if (ref.name === '' && sender.kind === 'device') this.deps.events.emit('device.fetched', { deviceId: ref.deviceId });
      } else {
        await this.applyDelete(ref, parseSimpleRequest(payload, this.deps.limits, ref, 'delete'), sender, answered, sender.kind === 'operator');
      }
    } catch (err) {
      await this.reject(ref, op, asUpdraftError(err), salvageClientToken(payload), answered);
    }
  }

  /**
   * Applies an update on behalf of `sender` (the operator API calls this directly; MQTT
   * requests arrive here through the queue). Resolves with the committed record after the
   * answers are published; throws UpdraftError when rejected.
   */
  update(ref: ShadowRef, request: UpdateRequest, sender: Sender): Promise<ShadowRecord> {
    return this.queue.run(key(ref), () => this.applyUpdate(ref, request, sender));
  }

  /**
   * Deletes a shadow on behalf of `sender` (the operator API), in the device's queue like
   * its own requests: `delete/accepted` is published and the tombstone keeps the version.
   * NOT_FOUND when there is none.
   */
  delete(ref: ShadowRef, sender: Sender): Promise<void> {
    return this.queue.run(key(ref), () => this.applyDelete(ref, {}, sender, () => {}));
  }

  /** The full document of a shadow (desired, reported, delta, metadata); 404 if none. */
  getDocument(ref: ShadowRef): Promise<ShadowDocument> {
    return this.readDocument(ref, undefined, false);
  }

  /**
   * The update command for `software` on `deviceId` (signed URL and manifest), as a delta
   * carries it; undefined without an issuer. The AWS jobs door puts it in job documents.
   */
  async command(deviceId: string, software: DesiredSoftware): Promise<SoftwareCommand | undefined> {
    return this.deps.issueCommand ? this.deps.issueCommand(deviceId, software) : undefined;
  }

  /**
   * Publishes the delta of `deviceId`'s classic shadow as the store holds it now (its update
   * command with a fresh URL, at the shadow's version), nothing written: the same command
   * asked again (jobs/disruption-resync.ts, after the database went back). Only when the shadow
   * has a delta and `onlyIf` holds for the record read; in the device's queue, after its
   * requests queued before. 'sent', 'none' (no shadow, no delta, or `onlyIf` false), or
   * 'unheard' (nothing subscribes to the device's delta topic: offline on the embedded broker).
   */
  resendDelta(deviceId: string, onlyIf?: (shadow: ShadowRecord) => boolean): Promise<'sent' | 'none' | 'unheard'> {
    const ref: ShadowRef = { deviceId, name: '' };
    return this.queue.run(key(ref), async () => {
      const record = await this.deps.store.getShadow(deviceId, '');
      if (!record || record.deleted || (onlyIf && !onlyIf(record))) return 'none';
      const now = this.now();
      const delta = await this.publishDelta(ref, record, now);
      if (typeof delta === 'object') {
        await delta.published;
        return 'sent';
      }
      // a shadow with no delta is 'none' whether or not its device listens (resend looks for the delta first)
      return delta === 'unheard' && !deltaMessage(record, now) ? 'none' : delta;
    });
  }

  /**
   * Publishes `record`'s delta on `ref`'s delta topic (with the request's `clientToken`), its
   * software part the update command with a fresh URL (`decorate`): resolves once the command is
   * in, with the publish under way (`published`, which `publish` never rejects). 'unheard' when
   * nothing subscribes to the topic (the embedded broker can tell): nothing is built or signed
   * for an offline device. 'none' when the shadow has no delta.
   */
  private async publishDelta(ref: ShadowRef, record: ShadowRecord, now: number, clientToken?: string): Promise<{ published: Promise<void> } | 'none' | 'unheard'> {
    const topic = answerTopic(ref, 'update', 'delta');
    if (this.deps.bus.hasSubscribers?.(topic) === false) return 'unheard';
    const delta = deltaMessage(record, now, clientToken);
    if (!delta) return 'none';
    await this.decorate(ref, record, delta.state);
    return { published: this.publish(topic, delta) };
  }

  /** `audit`: log the write as the operator's over MQTT (`auditOperator`), once committed and before it is answered. */
  private async applyUpdate(ref: ShadowRef, request: UpdateRequest, sender: Sender, answered?: () => void, audit = false): Promise<ShadowRecord> {
    checkSoftwareSection(ref, request, sender);
    jobVersionOfThisReport(ref, request);
    const { store } = this.deps;
    const k = key(ref);
    for (let attempt = 0; ; attempt++) {
      const cached = attempt === 0 ? this.cache.get(k) : undefined;
      const previous = cached ?? (await store.getShadow(ref.deviceId, ref.name));
      // a shadow that exists is a registered device's (a deletion deletes its shadows first):
      // only a creation asks the registry
      if (!previous || previous.deleted) await this.refuseUnregistered(ref, sender);
      const now = this.now();
      let applied;
      try {
        if (sender.kind === 'device' && ref.name === '' && removesSoftware(request) && previous && !previous.deleted && previous.state.desired?.software !== undefined) {
          throw new UpdraftError('FORBIDDEN', 'desired.software can be removed by operators only: this shadow holds it');
        }
        applied = applyUpdate(previous, ref, request, now, this.deps.limits);
      } catch (err) {
        // a refusal judged on the cached copy (409, 413, 403...) is confirmed against the store:
        // another instance may have written since this one cached it, and a refusal is never
        // committed, so nothing else would replace the stale copy. An acceptance needs no such
        // read: its conditional write fails on a stale copy and is retried from the store
        if (cached && err instanceof UpdraftError) {
          this.cache.delete(k);
          continue;
        }
        throw err;
      }
      const { next, accepted } = applied;
      // only a creation counts the device's shadows: an update of one that exists (the hot
      // path) costs no query more
      const creates = ref.name !== '' && (!previous || previous.deleted);
      const committed = creates
        ? await this.creations.run(ref.deviceId, async () => {
            await this.checkRoomForNamedShadow(ref);
            // a name never used (no tombstone to reuse) adds a row: bound the device's tombstones
            if (!previous) await this.makeRoomForTombstones(ref);
            return store.putShadow(next, previous?.version ?? 0);
          })
        : await store.putShadow(next, previous?.version ?? 0);
      if (!committed) {
        this.cache.delete(k);
        // another writer committed first; with an explicit version that is the caller's conflict
        if (request.version !== undefined && !cached) throw new UpdraftError('CONFLICT', 'Version conflict');
        // without one, the update applies to whatever is current (protocol.md): it is never
        // refused as a conflict, only, after every retry, as a moment's overload to retry
        if (attempt >= MAX_STORE_RETRIES) throw new UpdraftError('TOO_MANY_REQUESTS', `the shadow kept changing under this update (${attempt + 1} attempts: other instances write it); retry later`);
        if (attempt > 0) await sleep(Math.random() * Math.min(2 ** attempt, RACE_BACKOFF_MAX_MS));
        continue;
      }
      rememberLru(this.cache, k, next, CACHE_ENTRIES);
      // committed: now answer (steps 4 and 9). An answer no subscription matches is neither
      // built nor sent (the embedded broker can tell): a rollout writing commands for devices
      // that are offline signs no URL for them, and `documents`, which agents never read,
      // costs nothing. A device that subscribes later catches up with `get`.
      // The answers are published one after the other without waiting for each to be
      // acknowledged (one connection keeps them in order), so they can leave in one write
      // and cost one broker round trip instead of three; the update resolves once all are.
      const wanted = (topic: string) => this.deps.bus.hasSubscribers?.(topic) !== false;
      const answers: Promise<void>[] = [];
      const acceptedTopic = answerTopic(ref, 'update', 'accepted');
      if (wanted(acceptedTopic)) answers.push(this.publish(acceptedTopic, accepted));
      const documentsTopic = answerTopic(ref, 'update', 'documents');
      if (wanted(documentsTopic)) {
        const documents: DocumentsMessage = { previous: snapshot(previous), current: snapshot(next)!, timestamp: now };
        if (request.clientToken !== undefined) documents.clientToken = request.clientToken;
        answers.push(this.publish(documentsTopic, documents));
      }
      const delta = await this.publishDelta(ref, next, now, request.clientToken);
      if (typeof delta === 'object') answers.push(delta.published);
      if (audit && (request.state.desired !== undefined || request.state.reported !== undefined)) this.auditOperator(ref, 'update', sender, next.version, request.state.desired, request.state.reported);
      answered?.();
      await Promise.all(answers);
      this.deps.events.emit('shadow.updated', { previous: previous?.deleted ? undefined : previous, current: next, request, sender });
      return next;
    }
  }

  /**
   * Refuses to create a named shadow of a device that has `maxNamedShadows` (one device could
   * otherwise fill the store: a QA pass created 2,000 of 7 KB in seconds). 403, not 409,
   * which shadow clients take as a version conflict to re-read and retry, nor 429 (retry later):
   * the same request is refused until a shadow is deleted. With several instances, creations
   * of one device's shadows on two of them at once can pass the limit by one each.
   */
  private async checkRoomForNamedShadow(ref: ShadowRef): Promise<void> {
    const max = this.deps.maxNamedShadows ?? DEFAULT_MAX_NAMED_SHADOWS;
    // the classic shadow ('') is listed too: it is not counted
    const named = (await this.deps.store.listShadowNames(ref.deviceId)).filter((n) => n !== '').length;
    if (named >= max) {
      throw new UpdraftError('FORBIDDEN', `device ${ref.deviceId} has ${named} named shadows, the most it may have (shadow.maxNamedShadows ${max}): shadow '${ref.name}' is not created; delete one first`);
    }
  }

  /**
   * A deleted named shadow leaves a tombstone (its name and version, no state), so that the
   * name created again goes on from its version instead of reusing one. A device creating
   * and deleting ever new names would add a row per name for good; so before a new name is
   * created, the device's oldest tombstones are removed until it keeps fewer than
   * `shadow.maxNamedShadows` of them: at most twice that many named rows per device. A name
   * whose tombstone was removed starts again from version 1 (AWS IoT does so 48 hours after
   * a deletion). Runs inside the device's creations, one at a time on an instance.
   */
  private async makeRoomForTombstones(ref: ShadowRef): Promise<void> {
    const max = this.deps.maxNamedShadows ?? DEFAULT_MAX_NAMED_SHADOWS;
    const tombstones = (await this.deps.store.listShadowTombstones(ref.deviceId)).filter((t) => t.name !== '');
    for (const t of tombstones.slice(0, Math.max(0, tombstones.length - max + 1))) {
      this.cache.delete(key({ deviceId: ref.deviceId, name: t.name }));
      await this.deps.store.removeShadowTombstone(ref.deviceId, t.name, t.version);
    }
  }

  /**
   * NOT_FOUND naming the device when `sender` is not a device and `ref`'s device is not
   * registered (ReplicaDeps.isRegistered): an operator's request for an id no device has, or
   * the rollout engine's for a device deleted since it was picked (it retries next tick, finds
   * the device gone and ends the execution).
   */
  private async refuseUnregistered(ref: ShadowRef, sender: Sender): Promise<void> {
    if (sender.kind === 'device' || !this.deps.isRegistered) return;
    if (!(await this.deps.isRegistered(ref.deviceId))) {
      throw new UpdraftError('NOT_FOUND', `device ${ref.deviceId} is not registered; register it with: updraft device register ${ref.deviceId}`);
    }
  }

  /** The 404 of a get or delete that finds no shadow: the device's absence when it is not registered (and `sender` is no device). */
  private async missing(ref: ShadowRef, sender: Sender | undefined): Promise<UpdraftError> {
    if (sender) await this.refuseUnregistered(ref, sender);
    return notFound(ref);
  }

  /**
   * The operator's audit trail for its writes over MQTT (docs/security.md, Who changed what),
   * as `operator request` is for the API's: which shadow, its version after the write, who,
   * and which desired keys the write set or removed, with the build and job id of
   * `desired.software`; and, for a write of the device's reported state (which the job
   * tracker reads as the device's own report: a SUCCESS written so ends the device's job),
   * which reported keys, with the build, status and job id of `reported.software`. Key names
   * only, never a value (a desired key may hold a setting the operator would not have
   * logged), never the digest or a download URL (the delta's, not the request's). The API's
   * own writers (rollouts, decommissioning) call `update` and `delete`, not this path: their
   * changes are logged by the API request that asked them.
   */
  private auditOperator(ref: ShadowRef, op: ShadowOperation, sender: Sender, version: number, desired?: JsonObject | null, reported?: JsonObject | null): void {
    const line: Record<string, unknown> = { op, deviceId: ref.deviceId, shadow: ref.name, version, by: sender.id === OPERATOR_USERNAME ? 'operator' : `operator ${sender.id}` };
    // one section's fields: its keys, and the build, status and job id of its `software`
    // (`<section>Software`, ... for reported; the desired ones keep their first names)
    const section = (part: JsonObject | null | undefined, name: 'desired' | 'reported', fields: { software: string; status?: string; jobId: string }) => {
      if (part === undefined) return;
      if (part === null) {
        line[name] = null;
        return;
      }
      const keys = Object.keys(part);
      line[name] = keys.length > AUDIT_KEYS ? `${keys.slice(0, AUDIT_KEYS).join(',')},+${keys.length - AUDIT_KEYS} more` : keys.join(',');
      const sw = part.software;
      if (sw === null) line[fields.software] = null;
      else if (isJsonObject(sw)) {
        if (typeof sw.name === 'string' && typeof sw.version === 'string') line[fields.software] = `${sw.name}@${sw.version}`;
        if (fields.status && typeof sw.status === 'string') line[fields.status] = sw.status;
        if (typeof sw.jobId === 'string') line[fields.jobId] = sw.jobId;
      }
    };
    section(desired, 'desired', { software: 'software', jobId: 'jobId' });
    section(reported, 'reported', { software: 'reportedSoftware', status: 'reportedStatus', jobId: 'reportedJobId' });
    this.deps.logger.info('operator mqtt', line);
  }

  /** `audit`: as applyUpdate's; the line's version is the deleted document's, as `delete/accepted` says. */
  private async applyDelete(ref: ShadowRef, req: { clientToken?: string; version?: number }, sender: Sender, answered: () => void, audit = false): Promise<void> {
    this.cache.delete(key(ref));
    const current = await this.deps.store.getShadow(ref.deviceId, ref.name);
    if (!current || current.deleted) throw await this.missing(ref, sender);
    if (req.version !== undefined && req.version !== current.version) throw new UpdraftError('CONFLICT', 'Version conflict');
    // deleting the shadow removes desired.software, the operator's update command, as
    // `desired: null` would: the same rule holds (checkSoftwareSection)
    if (ref.name === '' && sender.kind === 'device' && current.state.desired?.software !== undefined) {
      throw new UpdraftError('FORBIDDEN', 'desired.software can be removed by operators only: this shadow holds it');
    }
    const now = this.now();
    const gone = tombstone(current, now);
    if (!(await this.deps.store.putShadow(gone, current.version))) throw new UpdraftError('CONFLICT', 'Version conflict');
    const answer: DeleteAccepted = { version: current.version, timestamp: now };
    if (req.clientToken !== undefined) answer.clientToken = req.clientToken;
    if (audit) this.auditOperator(ref, 'delete', sender, current.version);
    const sent = this.publish(answerTopic(ref, 'delete', 'accepted'), answer);
    answered();
    await sent;
    this.deps.events.emit('shadow.deleted', { deviceId: ref.deviceId, name: ref.name, version: gone.version });
  }

  private async readDocument(ref: ShadowRef, clientToken: string | undefined, withCommand: boolean, sender?: Sender): Promise<ShadowDocument> {
    const record = await this.deps.store.getShadow(ref.deviceId, ref.name);
    // a newer record than the cached copy (another instance wrote it) replaces it, so that the
    // next update here does not first fail its conditional write; versions only grow, so a
    // read that overtook this instance's own write (the API's reads are not queued) never
    // replaces a newer copy
    const k = key(ref);
    const cached = record && this.cache.get(k);
    if (cached && record.version > cached.version) this.cache.set(k, record);
    if (!record || record.deleted) throw await this.missing(ref, sender);
    const doc = fullDocument(record, this.now(), clientToken);
    if (withCommand && doc.state.delta) await this.decorate(ref, record, doc.state.delta);
    return doc;
  }

  /**
   * The software part of a delta is the update command (steps 5-6): when any of its leaves
   * differs, the device receives the whole desired software section plus a freshly signed,
   * device-scoped URL, so it never has to combine partial deltas.
   */
  private async decorate(ref: ShadowRef, record: ShadowRecord, delta: Record<string, unknown>): Promise<void> {
    if (ref.name !== '' || !('software' in delta) || !this.deps.issueCommand) return;
    const desired = record.state.desired?.software;
    if (!isJsonObject(desired)) return;
    try {
      delta.software = { ...(await this.deps.issueCommand(ref.deviceId, parseDesiredSoftware(desired))) };
    } catch (err) {
      this.deps.logger.error('cannot issue update command', { deviceId: ref.deviceId, error: asUpdraftError(err).message });
    }
  }

  private async reject(ref: TopicRef, op: ShadowOperation, err: UpdraftError, clientToken: string | undefined, answered: () => void): Promise<void> {
    // a dependency down (the database) fails every request alike: one line per 30 s, counting
    // the rest, instead of one per request (a fleet's in an outage); other faults each their own
    if (err.code === 'UNAVAILABLE') this.unavailableLog.warn('requests failed: a dependency cannot be reached', { deviceId: ref.deviceId, op, error: err.message });
    else if (err.status >= 500) this.deps.logger.error('request failed', { deviceId: ref.deviceId, op, error: err.message });
    // which device was refused, and why (never the payload); a device in a loop is counted
    else if (err.status >= 400) this.rejectionLog.rejected({ deviceId: ref.deviceId, shadow: ref.name, op, code: err.status, message: err.message });
    this.stats.rejections.set(err.status, (this.stats.rejections.get(err.status) ?? 0) + 1);
    const rejection: Rejection = { code: err.status, message: publicMessage(err), timestamp: this.now() };
    if (clientToken !== undefined) rejection.clientToken = clientToken;
    const sent = this.publish(answerTopic(ref, op, 'rejected'), rejection);
    answered();
    await sent;
  }

  private async publish(topic: string, message: object): Promise<void> {
    try {
      await this.deps.bus.publish(topic, JSON.stringify(message), 1);
    } catch (err) {
      // the state is committed; a device that misses an answer catches up with get
      this.deps.logger.warn('answer not published', { topic, error: asUpdraftError(err).message });
    }
  }
}

function key(ref: ShadowRef): string {
  return `${ref.deviceId}/${ref.name}`;
}

function notFound(ref: ShadowRef): UpdraftError {
  return new UpdraftError('NOT_FOUND', `No shadow exists with name: '${ref.name === '' ? ref.deviceId : ref.name}'`);
}

/**
 * `desired.software` is the update command: only operators (and the rollout engine) set it,
 * and it must be well formed, because the device acts on it. `reported.software` is what
 * the server reads back (a job's outcome, what a device runs): its fields must have their
 * types, so a malformed report is rejected with the field's name instead of being ignored.
 */
/** True when the update removes `desired.software` (`desired: null`, or `software: null` in it). */
function removesSoftware(request: UpdateRequest): boolean {
  const desired = request.state.desired;
  return desired === null || (desired !== undefined && desired.software === null);
}

/**
 * `reported.software.jobVersion` (protocol/software.ts) is about the report that carries it:
 * a write of `reported.software` that does not name it removes it. The shadow merges leaf by
 * leaf, so a value left by the agent's re-report of an older job was read with the next
 * report of another job by a writer that does not send it (the AWS jobs door, an agent from
 * before the field), and that job's SUCCESS was judged against it: FAILED (review, 2026-12-06).
 */
function jobVersionOfThisReport(ref: ShadowRef, request: UpdateRequest): void {
  const software = ref.name === '' ? request.state.reported?.software : undefined;
  if (isJsonObject(software) && !('jobVersion' in software)) software.jobVersion = null;
}

function checkSoftwareSection(ref: ShadowRef, request: UpdateRequest, sender: Sender): void {
  const desired = request.state.desired;
  if (ref.name !== '') return;
  const reported = request.state.reported;
  if (reported) checkReportedSoftware(reported.software);
  const touchesSoftware = desired === null || (desired !== undefined && 'software' in desired);
  if (!touchesSoftware) return;
  // a device may clear a desired state that holds no software (its own keys): whether it
  // holds any is checked against the stored shadow (removesSoftware)
  if (sender.kind === 'device' && !(desired === null || desired.software === null)) {
    throw new UpdraftError('FORBIDDEN', 'desired.software can be set by operators only');
  }
  const sw = desired?.software;
  if (sw !== undefined && sw !== null) parseDesiredSoftware(sw, 'state.desired.software');
}
