/**
 * The typed in-process event bus (STYLE.md: zigbee2mqtt's habit). Parts publish what
 * happened; the job tracker, the API's event stream and the demo listen. Listeners must not
 * throw and must not block: they queue their own work.
 */
import { EventEmitter } from 'node:events';
import type { Sender } from '../broker/message-bus.ts';
import type { UpdateRequest } from '../protocol/shadow-messages.ts';
import type { ExecutionRecord, JobRecord, ShadowRecord } from '../store/state-store.ts';

/**
 * What changed in a device's credentials (`device.credentials`): `deleted` a decommission's
 * end, `unregistered` a registration undone (a bulk registration that failed part way). Absent
 * on an event relayed from an older instance: listeners that act on it read the device again.
 */
export type CredentialsChange = 'registered' | 'secret' | 'revoked' | 'reinstated' | 'deleted' | 'unregistered';

/** Every event and its payload. */
export interface UpdraftEvents {
  /** An update was committed to a shadow (pattern steps 4 and 8). */
  'shadow.updated': { previous: ShadowRecord | undefined; current: ShadowRecord; request: UpdateRequest; sender: Sender };
  /** A shadow was deleted. */
  'shadow.deleted': { deviceId: string; name: string; version: number };
  /** A device connected or disconnected. */
  'device.presence': { deviceId: string; online: boolean };
  /**
   * A device asked for its classic shadow (`get`): what an agent does on every connect. The
   * sign of a device coming online where the broker does not tell (an external one).
   */
  'device.fetched': { deviceId: string };
  /**
   * A device's broker credentials changed, here or on another instance: it was registered,
   * its secret replaced, it was revoked, reinstated or deleted, or a registration was undone. What
   * `updraft broker mosquitto-config --watch` follows to keep an external broker's password
   * file current.
   */
  'device.credentials': { deviceId: string; change?: CredentialsChange };
  /** A device's attributes or tags changed (what queries, dynamic groups and continuous jobs select by). */
  'device.changed': { deviceId: string };
  /** A job execution changed state. */
  'execution.changed': { previous: ExecutionRecord | undefined; current: ExecutionRecord };
  /** A device's log of a failed job was kept (`jobs/job-logs.ts`), here or on another instance. */
  'job.log': { jobId: string; deviceId: string; agentJobId: string; lineCount: number };
  /**
   * A build was added to the artifact catalogue or deleted from it (a prune deletes one by one),
   * here or on another instance. A build is immutable otherwise: its signature status changes
   * only with the signing key, which a running server never replaces.
   */
  'artifact.changed': { name: string; version: string; change: 'added' | 'deleted' };
  /**
   * A job was created or changed state or progress (rollouts). `previous` is the record the
   * write replaced (the store's conditional update took it at its version), so a listener
   * tells what changed without having seen the job before (after a restart, on an instance
   * taking over); absent for a job's creation and for a notice that wrote nothing. `waves`:
   * how many waves the job has, when `job` comes without its spec (relayed from another
   * instance, which leaves specs out: `cluster/event-relay.ts`).
   */
  'job.changed': { job: JobRecord; previous?: JobRecord; waves?: number };
  /**
   * A finished job was deleted with everything kept under its id (`JobService.delete`, an
   * operator's or the retention sweep's), here or on another instance: lists drop it.
   */
  'job.deleted': { jobId: string };
  /** A signing key certificate was installed, here or on another instance: look at the shared one (`signing/shared-certificate.ts`). */
  'keys.certificate': { serial: number };
  /** A viewer token was added or removed, here or on another instance (`server/named-tokens.ts`): read them again; streams opened with a removed one end. */
  'viewer.tokens': { name: string };
  /** A named operator token was added or removed (`server/named-tokens.ts`): the same. */
  'operator.tokens': { name: string };
  /** The operator token was replaced: live API streams opened with the old one end. */
  'operator.token-rotated': Record<string, never>;
  /** A thing started using the AWS IoT topic families (issue 9), here or on another instance. */
  'aws.thing': { thing: string };
}

/** A typed wrapper over EventEmitter. */
export class EventBus {
  private readonly emitter = new EventEmitter();

  constructor() {
    // many parts (and every live API stream) listen: the default cap of 10 is a false alarm here
    this.emitter.setMaxListeners(0);
  }

  emit<K extends keyof UpdraftEvents>(event: K, payload: UpdraftEvents[K]): void {
    this.emitter.emit(event, payload);
  }

  /** How many listeners `event` has (live API streams among them). */
  listenerCount(event: keyof UpdraftEvents): number {
    return this.emitter.listenerCount(event);
  }

  on<K extends keyof UpdraftEvents>(event: K, listener: (payload: UpdraftEvents[K]) => void): () => void {
    this.emitter.on(event, listener);
    return () => this.emitter.off(event, listener);
  }
}
