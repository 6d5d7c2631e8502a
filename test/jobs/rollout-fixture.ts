/**
 * The rollout parts on a real SQLite store and a real replica, with a fake clock and a bus
 * that only records what the replica publishes. Devices are simulated by writing their
 * reports through the replica as the device would (`report`), so the tracker sees exactly
 * what it sees in production. The engine never ticks by itself: tests call `tick()`.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { ArtifactService } from '../../src/artifacts/artifact-service.ts';
import { LocalBlobStore } from '../../src/artifacts/local-blob-store.ts';
import type { Lease } from '../../src/cluster/lease.ts';
import type { InboundMessage, MessageBus, PresenceEvent } from '../../src/broker/message-bus.ts';
import { EventBus } from '../../src/events/event-bus.ts';
import { ExecutionTracker } from '../../src/jobs/execution-tracker.ts';
import { Rollouts } from '../../src/jobs/rollouts.ts';
import type { JsonObject } from '../../src/protocol/json.ts';
import { DeviceRegistry } from '../../src/registry/device-registry.ts';
import { ShadowReplica } from '../../src/shadow/replica.ts';
import type { ExecutionRecord, JobRecord, StateStore } from '../../src/store/state-store.ts';
import { SqliteStore } from '../../src/store/sqlite-store.ts';
import { silentLogger, type Logger } from '../../src/util/logger.ts';
import type { RolloutEngineDeps } from '../../src/jobs/rollout-engine.ts';

/** A bus that records publications, and can be held up as a stalled broker connection is. */
export class RecordingBus implements MessageBus {
  readonly published: { topic: string; body: any }[] = [];
  private held: { until: Promise<void>; release: () => void } | undefined;
  async start(): Promise<void> {}
  async stop(): Promise<void> {}
  onRequest(_h: (msg: InboundMessage) => void): void {}
  onPresence(_h: (e: PresenceEvent) => void): void {}
  async publish(topic: string, payload: string | Buffer): Promise<void> {
    this.published.push({ topic, body: JSON.parse(payload.toString()) });
    await this.held?.until;
  }
  /** Publications wait (the shadow updates publishing them stay in flight) until the returned function is called (or the fixture closes). */
  hold(): () => void {
    let release!: () => void;
    const until = new Promise<void>((resolve) => (release = resolve));
    this.held = { until, release };
    return () => this.unhold();
  }
  /** Lets held publications go. */
  unhold(): void {
    this.held?.release();
    this.held = undefined;
  }
}

/** A running fixture. */
export interface RolloutFixture {
  dir: string;
  /** The store: SQLite in the fixture's directory, or the one given (`store`). */
  store: StateStore;
  replica: ShadowReplica;
  tracker: ExecutionTracker;
  rollouts: Rollouts;
  registry: DeviceRegistry;
  artifacts: ArtifactService;
  bus: RecordingBus;
  events: EventBus;
  /** The fake clock, in ms. */
  clock: { now: number };
  advance(ms: number): void;
  tick(): Promise<void>;
  /** Registers devices `prefix1..prefixN` reporting `version` (IDLE). */
  fleet(prefix: string, n: number, version?: string, extra?: { attributes?: Record<string, string | number | boolean>; tags?: string[] }): Promise<string[]>;
  addArtifact(version: string, name?: string): Promise<void>;
  /** Writes `reported.software` as the device would. */
  report(deviceId: string, software: JsonObject): Promise<void>;
  /** The device-side command currently desired for a device. */
  desired(deviceId: string): Promise<JsonObject | undefined>;
  execution(jobId: string, deviceId: string): Promise<ExecutionRecord>;
  job(jobId: string): Promise<JobRecord>;
  /** Reports the whole agent sequence for the job currently desired, ending in `outcome`. */
  complete(deviceId: string, outcome?: 'SUCCESS' | 'FAILURE', running?: string): Promise<void>;
  /**
   * Takes the replica's only place (a fixture started with `maxPending: 1`) with an update of
   * `deviceId` whose answers are held, so that a write meanwhile is refused with 429 (the
   * replica at its bound). Resolves with the function that lets it go and waits for it.
   */
  occupyReplica(deviceId: string): () => Promise<void>;
  /** Restarts the rollout parts (not the store) as a new process would. */
  restart(): Promise<void>;
  close(): Promise<void>;
}

/** Starts a fixture. */
export async function startRolloutFixture(
  options: {
    arrivals?: 'presence' | 'fetch';
    maxArrivedPerJob?: number;
    lease?: Lease;
    /** An existing fixture's directory (a process killed on it): its store and artifacts are opened again, and removed by close(). */
    dir?: string;
    /** Versions of `fw` put in the catalogue at start (`addArtifact`), e.g. ['1.0.0', '2.0.0']. */
    builds?: string[];
    /** The replica's bound on shadow requests in flight (past it: 429); default 100,000. */
    maxPending?: number;
    /** Whether the artifact storage answers, as the engine asks it (default: not asked). */
    artifactStorage?: RolloutEngineDeps['artifactStorage'];
    /** Whether the instance's MQTT connection is up, as the engine asks it (default: always). */
    mqttConnected?: RolloutEngineDeps['mqttConnected'];
    /** A clock steps never move, beside the fake one (default none: the engine looks for no step of the clock). */
    monotonic?: RolloutEngineDeps['monotonic'];
    /** The engine's tick timer in ms (default 0: no timer, the test calls tick()). */
    tickMs?: number;
    /** The rollout parts' logger (default silent). */
    logger?: Logger;
    /** A store to run on instead of SQLite in the fixture's directory (PostgreSQL); started here, stopped by close(). */
    store?: StateStore;
    /** Days finished jobs are kept (`jobs.retentionDays`; default 0: for ever); the sweep runs only when a test calls its pass(). */
    retentionDays?: number;
  } = {},
): Promise<RolloutFixture> {
  const { dir: reopened, builds = [], maxPending = 100_000, logger = silentLogger, store: given, retentionDays = 0, ...engineOptions } = options;
  const dir = reopened ?? (await mkdtemp(path.join(os.tmpdir(), 'updraft-rollout-')));
  const clock = { now: Date.UTC(2026, 0, 1) };
  const now = () => clock.now;
  const store: StateStore = given ?? new SqliteStore({ path: path.join(dir, 'updraft.db') });
  await store.start();
  const blobs = new LocalBlobStore({ dir: path.join(dir, 'artifacts') });
  await blobs.start();
  const events = new EventBus();
  const bus = new RecordingBus();
  // as the server wires it: an operator's write takes no shadow for an id no device has
  const isRegistered = async (deviceId: string) => (await store.getDevice(deviceId)) !== undefined;
  const replica = new ShadowReplica({ store, bus, events, logger: silentLogger, limits: { maxDocumentBytes: 8192, maxDepth: 6 }, maxPending, now: () => Math.floor(clock.now / 1000), isRegistered });
  await replica.start();
  const registry = new DeviceRegistry({ store });
  const artifacts = new ArtifactService({ store, blobs, maxArtifactBytes: 1 << 20 } as ConstructorParameters<typeof ArtifactService>[0]);
  let tracker = new ExecutionTracker({ store, events, logger: silentLogger, now });
  await tracker.start();
  const build = () => new Rollouts({ store, events, replica, artifacts, tracker, logger, isOnline: () => false, onlineCount: () => 0, engine: { now, tickMs: 0, continuousScanMs: 60_000, ...engineOptions }, retention: { days: retentionDays, everyMs: 2 ** 31 - 1 } });
  let rollouts = build();
  await rollouts.start();

  const f: RolloutFixture = {
    dir,
    store,
    replica,
    tracker,
    rollouts,
    registry,
    artifacts,
    bus,
    events,
    clock,
    advance: (ms) => void (clock.now += ms),
    tick: async () => {
      await f.rollouts.engine.tick();
      await f.tracker.idle();
    },
    async fleet(prefix, n, version = '1.0.0', extra = {}) {
      const ids = Array.from({ length: n }, (_, i) => `${prefix}${String(i + 1).padStart(3, '0')}`);
      for (const id of ids) {
        await registry.register({ deviceId: id, ...extra });
        await f.report(id, { name: 'fw', version, status: 'IDLE' });
      }
      return ids;
    },
    async addArtifact(version, name = 'fw') {
      const bytes = Buffer.from(`${name}-${version}`);
      await artifacts.add(name, version, Readable.from([bytes]));
    },
    async report(deviceId, software) {
      await replica.update({ deviceId, name: '' }, { state: { reported: { software } } }, { kind: 'device', id: deviceId });
      await f.tracker.idle();
      await f.rollouts.engine.settled(); // what the recorded report set off (a late rollback)
    },
    async desired(deviceId) {
      const s = await store.getShadow(deviceId, '');
      return s?.state.desired?.software as JsonObject | undefined;
    },
    async execution(jobId, deviceId) {
      await f.tracker.idle();
      const e = await store.getExecution(jobId, deviceId);
      if (!e) throw new Error(`no execution ${jobId}/${deviceId}`);
      return e;
    },
    async job(jobId) {
      const j = await store.getJob(jobId);
      if (!j) throw new Error(`no job ${jobId}`);
      return j;
    },
    async complete(deviceId, outcome = 'SUCCESS', running) {
      const cmd = await f.desired(deviceId);
      if (!cmd) throw new Error(`${deviceId} has no command`);
      const base = { name: 'fw', version: running ?? '1.0.0', jobId: cmd.jobId as string };
      await f.report(deviceId, { ...base, status: 'DOWNLOADING', progress: 0.5 });
      await f.report(deviceId, { ...base, status: 'INSTALLING' });
      if (outcome === 'SUCCESS') await f.report(deviceId, { ...base, version: cmd.version as string, status: 'SUCCESS' });
      else await f.report(deviceId, { ...base, status: 'FAILURE', error: 'health check failed' });
    },
    occupyReplica(deviceId) {
      const release = bus.hold();
      const stalled = replica.update({ deviceId, name: '' }, { state: { reported: { note: 'slow' } } }, { kind: 'device', id: deviceId });
      return async () => {
        release();
        await stalled;
      };
    },
    async restart() {
      await f.rollouts.stop();
      await tracker.stop();
      tracker = new ExecutionTracker({ store, events, logger: silentLogger, now });
      await tracker.start();
      f.tracker = tracker;
      rollouts = build();
      f.rollouts = rollouts;
      await rollouts.start();
    },
    async close() {
      bus.unhold(); // a test that failed while holding it must not hang here
      await f.rollouts.stop();
      await f.tracker.stop();
      await replica.stop();
      await blobs.stop();
      await store.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
  for (const version of builds) await f.addArtifact(version);
  return f;
}

/**
 * A device whose attempt timed out while its job was paused (a retry allowed): it is told to stay
 * on 1.0.0 (`<job>.cancel`), not to install the timed-out attempt; once the job resumes, the retry
 * goes out under its own id (`<job>.2`) and succeeds.
 */
export async function assertStayThenRetry(f: RolloutFixture, jobId: string, d: string, why: string): Promise<void> {
  const stay = await f.desired(d);
  assert.deepEqual([stay?.jobId, stay?.version], [`${jobId}.cancel`, '1.0.0'], why);
  await f.rollouts.jobs.resume(jobId);
  await f.tick();
  const retry = await f.desired(d);
  assert.deepEqual([retry?.jobId, retry?.version], [`${jobId}.2`, '2.0.0'], 'the retry goes out under its own id');
  await f.complete(d);
  assert.equal((await f.execution(jobId, d)).status, 'SUCCEEDED');
}
