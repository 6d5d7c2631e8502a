/**
 * `GET /readyz`: whether this instance can serve devices now, for a load balancer or an
 * orchestrator (Kubernetes readiness probe) to route to it or not. `/healthz` stays the
 * liveness check (the process answers); this one checks what an instance depends on:
 *
 * - the state store answers a read within 2 s (PostgreSQL reachable, SQLite open);
 * - the artifact storage answers within 2 s (the S3 bucket reachable: artifacts are added
 *   and downloaded there; the local directory answers while the disk does), and a local
 *   artifact directory can be written (`unwritable`: a file is written, synced and removed in it, and 1 MiB must be left on its file system, at
 *   most every 5 s; a directory whose modes changed, or a full disk, failed only uploads);
 * - the MQTT bus is connected (an external broker; the embedded one listens while it runs);
 * - the instance is not stopping (so a balancer drains it before its sockets close).
 *
 * No token: it says only which check fails (`unreachable`, `timeout`, `disconnected`,
 * `stopping`, `unwritable`), never why in detail; the log says that, once per change.
 */
import { answersWithin, probeBlobStore, type ProbedStore } from '../artifacts/blob-store-probe.ts';
import type { StateStore } from '../store/state-store.ts';
import type { Logger } from '../util/logger.ts';

/** What one probe found. */
export interface Readiness {
  ready: boolean;
  checks: { store: string; artifacts: string; broker: string; instance: string };
}

/** What the probe looks at. */
export interface ReadinessDeps {
  store: Pick<StateStore, 'getDevice'>;
  /** Probed as the rollout engine probes it (`probeBlobStore`): any answer, even "absent", is an answer. */
  blobs: ProbedStore;
  /** A local artifact directory's write check: undefined while writable, else why not (LocalBlobStore.whyNotWritable). */
  artifactsWritable?: () => Promise<string | undefined>;
  /** True while the MQTT bus can carry messages. */
  busConnected: () => boolean;
  /** True once the instance began to stop. */
  stopping: () => boolean;
  logger: Logger;
  timeoutMs?: number;
}

/** Probes on demand; logs when the answer changes. */
export class ReadinessProbe {
  private readonly deps: ReadinessDeps;
  private last: string | undefined;

  constructor(deps: ReadinessDeps) {
    this.deps = deps;
  }

  async check(): Promise<Readiness> {
    const ms = this.deps.timeoutMs ?? 2000;
    const [{ state: store, detail: storeError }, { state: reached, detail: reachError }, unwritable] = await Promise.all([
      // a read of the store takes no signal: one that hangs is left to the store's own limits
      answersWithin(() => this.deps.store.getDevice('readyz-probe'), ms),
      // the same check as the rollout engine's hold on dispatch, so /readyz and the engine agree
      probeBlobStore(this.deps.blobs, ms),
      // not the engine's: devices download from a directory that takes no upload
      this.deps.artifactsWritable?.(),
    ]);
    const artifacts = reached === 'ok' && unwritable !== undefined ? 'unwritable' : reached;
    const artifactsError = reached === 'ok' && unwritable !== undefined ? `the artifact directory is ${unwritable}` : reachError;
    const broker = this.deps.busConnected() ? 'ok' : 'disconnected';
    const instance = this.deps.stopping() ? 'stopping' : 'ok';
    const checks = { store, artifacts, broker, instance };
    const r: Readiness = { ready: Object.values(checks).every((c) => c === 'ok'), checks };
    const summary = JSON.stringify(r.checks);
    if (summary !== this.last) {
      if (r.ready) this.deps.logger.info('ready', r.checks);
      else this.deps.logger.warn('not ready', { ...r.checks, ...(storeError ? { storeError } : {}), ...(artifactsError ? { artifactsError } : {}) });
      this.last = summary;
    }
    return r;
  }
}
