/**
 * `GET /readyz`: whether this instance can serve devices now, for a load balancer or an
 * orchestrator (Kubernetes readiness probe) to route to it or not. `/healthz` stays the
 * liveness check (the process answers); this one checks what an instance depends on:
 *
 * - the state store answers a read within 2 s (PostgreSQL reachable, SQLite open);
 * - the MQTT bus is connected (an external broker; the embedded one listens while it runs);
 * - the instance is not stopping (so a balancer drains it before its sockets close).
 *
 * No token: it says only which check fails (`unreachable`, `timeout`, `disconnected`,
 * `stopping`), never why in detail; the log says that, once per change.
 */
import type { StateStore } from '../store/state-store.ts';
import type { Logger } from '../util/logger.ts';

/** What one probe found. */
export interface Readiness {
  ready: boolean;
  checks: { store: string; broker: string; instance: string };
}

/** What the probe looks at. */
export interface ReadinessDeps {
  store: Pick<StateStore, 'getDevice'>;
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
    const [store, detail] = await this.storeCheck();
    const broker = this.deps.busConnected() ? 'ok' : 'disconnected';
    const instance = this.deps.stopping() ? 'stopping' : 'ok';
    const r: Readiness = { ready: store === 'ok' && broker === 'ok' && instance === 'ok', checks: { store, broker, instance } };
    const summary = JSON.stringify(r.checks);
    if (summary !== this.last) {
      if (r.ready) this.deps.logger.info('ready', r.checks);
      else this.deps.logger.warn('not ready', { ...r.checks, ...(detail ? { storeError: detail } : {}) });
      this.last = summary;
    }
    return r;
  }

  private async storeCheck(): Promise<[string, string | undefined]> {
    const ms = this.deps.timeoutMs ?? 2000;
    let timer: NodeJS.Timeout | undefined;
    try {
      const read = this.deps.store.getDevice('readyz-probe').then(() => 'ok' as const);
      const late = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), ms)));
      const result = await Promise.race([read, late]);
      return [result, result === 'timeout' ? `no answer within ${ms} ms` : undefined];
    } catch (err) {
      return ['unreachable', (err as Error).message];
    } finally {
      clearTimeout(timer);
    }
  }
}
