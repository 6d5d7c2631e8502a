/**
 * CRLs built and signed off the server's thread: in one worker thread (crl-worker.ts), one
 * build at a time. At 100,000 revoked entries a build takes a few hundred milliseconds (at
 * 1,000,000 some seconds), during which the thread also serving MQTT and HTTP must not stop
 * (QA, 2026-12: 1.6 to 20 s of stall with the forge builder on the thread).
 *
 * - A caller arriving while a build of the same inputs (CA, key, entries, times) is running
 *   or waiting shares it.
 * - A worker that fails or dies (an uncaught error, out of heap, terminated) rejects the
 *   build it had with INTERNAL (a 500, which `mosquitto-config --watch` retries), and is
 *   dropped: the next build starts a new one. A worker idle for `idleMs` is stopped (its heap
 *   held the last list's arrays), and never keeps the process alive while idle.
 * - Small lists are built on the calling thread (`inlineBelow`).
 */
import type { KeyObject } from 'node:crypto';
import { threadId as mainThreadId, Worker, type ResourceLimits } from 'node:worker_threads';
import { UpdraftError, type ErrorCode } from '../errors.ts';
import { encodeCrl, type CrlDerInput } from './crl-der.ts';
import type { CrlJob, CrlJobResult } from './crl-worker.ts';

/** Options of a CrlBuilder. */
export interface CrlBuilderOptions {
  /**
   * Lists of fewer entries are built on the calling thread. Measured (2 cores, loaded): 1,000
   * entries take about 3 ms to encode and sign here (2 ms of it the RSA signature), while a
   * worker takes about 300 ms to start (tsx and node-forge loaded into a new isolate) and a
   * round trip to a running one about 1 ms; below 1,000 the thread is held less than a
   * typical request takes, so the worker's start is not worth it.
   */
  inlineBelow?: number;
  /** A worker idle this long (ms) is stopped; the next build starts another. */
  idleMs?: number;
  /** Heap limits of the worker (node:worker_threads). */
  resourceLimits?: ResourceLimits;
}

const DEFAULTS = { inlineBelow: 1_000, idleMs: 60_000 };

/** A built CRL: its PEM and the thread that built it. */
export interface BuiltCrl {
  pem: string;
  threadId: number;
}

interface Job {
  input: CrlDerInput;
  promise: Promise<BuiltCrl>;
  resolve: (b: BuiltCrl) => void;
  reject: (e: Error) => void;
}

/** The worker's entry: tsx registered, then crl-worker.ts (workers do not inherit loader hooks). */
function bootstrap(): string {
  const tsx = import.meta.resolve('tsx/esm/api');
  const entry = new URL('./crl-worker.ts', import.meta.url).href;
  return `import(${JSON.stringify(tsx)}).then((m) => { m.register(); return import(${JSON.stringify(entry)}); })`;
}

function sameInput(a: CrlDerInput, b: CrlDerInput): boolean {
  if (a.caCertificate !== b.caCertificate || a.issuedAt !== b.issuedAt || a.thisUpdate !== b.thisUpdate || a.nextUpdate !== b.nextUpdate) return false;
  if (a.serials.length !== b.serials.length || !a.caKey.equals(b.caKey)) return false;
  for (let i = 0; i < a.serials.length; i++) if (a.serials[i] !== b.serials[i] || a.revokedAt[i] !== b.revokedAt[i]) return false;
  return true;
}

/** Builds CRLs in a worker thread, one at a time. */
export class CrlBuilder {
  private readonly options: Required<Omit<CrlBuilderOptions, 'resourceLimits'>> & Pick<CrlBuilderOptions, 'resourceLimits'>;
  private worker: Worker | undefined;
  private running: (Job & { id: number }) | undefined;
  private readonly queue: Job[] = [];
  private nextId = 1;
  private idle: NodeJS.Timeout | undefined;

  constructor(options: CrlBuilderOptions = {}) {
    this.options = { ...DEFAULTS, ...options };
  }

  /** The CRL of `input`, built in the worker (or here, for a small list). */
  build(input: CrlDerInput): Promise<BuiltCrl> {
    if (input.serials.length < this.options.inlineBelow) {
      try {
        return Promise.resolve({ pem: encodeCrl(input).toString('latin1'), threadId: mainThreadId });
      } catch (err) {
        return Promise.reject(err);
      }
    }
    const shared = [this.running, ...this.queue].find((j) => j && sameInput(j.input, input));
    if (shared) return shared.promise;
    let resolve!: Job['resolve'];
    let reject!: Job['reject'];
    const promise = new Promise<BuiltCrl>((res, rej) => ((resolve = res), (reject = rej)));
    this.queue.push({ input, promise, resolve, reject });
    this.next();
    return promise;
  }

  /** Stops the worker; a build it had, and those waiting, reject (review of 5459700: one waiting started a new worker). */
  async stop(): Promise<void> {
    clearTimeout(this.idle);
    for (const job of this.queue.splice(0)) job.reject(new UpdraftError('UNAVAILABLE', 'the CRL builder was stopped'));
    const w = this.worker;
    if (w) await w.terminate();
  }

  private next(): void {
    if (this.running) return;
    const job = this.queue.shift();
    if (!job) return;
    clearTimeout(this.idle);
    const id = this.nextId++;
    let worker: Worker;
    try {
      worker = this.ensureWorker();
    } catch (err) {
      // a thread that could not be made (ERR_WORKER_INIT_FAILED): this build fails, not the
      // process (next() runs from the worker's exit and message handlers too), and the next
      // one tries again (review of 5459700)
      job.reject(new UpdraftError('INTERNAL', `the CRL could not be built: no worker thread could be started (${(err as Error).message}); ask again`, { cause: err }));
      this.next();
      return;
    }
    const { caCertificate, caKey, serials, revokedAt, issuedAt, thisUpdate, nextUpdate } = job.input;
    const message: CrlJob = { id, caCertificate, caKey, serials: serials as string[], revokedAt: revokedAt instanceof Float64Array ? revokedAt : Float64Array.from(revokedAt), issuedAt, thisUpdate, nextUpdate };
    try {
      // copied, not transferred: the input stays whole for callers that share the build
      worker.postMessage(message);
    } catch (err) {
      job.reject(new UpdraftError('INTERNAL', `the CRL could not be given to its worker thread: ${(err as Error).message}`, { cause: err }));
      this.next();
      return;
    }
    this.running = { ...job, id };
    worker.ref();
  }

  private ensureWorker(): Worker {
    if (this.worker) return this.worker;
    const worker = new Worker(bootstrap(), { eval: true, resourceLimits: this.options.resourceLimits });
    this.worker = worker;
    worker.on('message', (m: CrlJobResult) => this.onResult(worker, m));
    worker.on('error', (err) => this.onDeath(worker, `failed: ${err.message}`));
    worker.on('messageerror', (err) => this.onDeath(worker, `sent a message that could not be read: ${err.message}`));
    worker.on('exit', (code) => this.onDeath(worker, `exited (code ${code})`));
    return worker;
  }

  private onResult(worker: Worker, m: CrlJobResult): void {
    const job = this.running;
    if (worker !== this.worker || !job || job.id !== m.id) return;
    this.running = undefined;
    if ('pem' in m) job.resolve({ pem: Buffer.from(m.pem.buffer, m.pem.byteOffset, m.pem.byteLength).toString('latin1'), threadId: m.threadId });
    else job.reject(new UpdraftError((m.error.code as ErrorCode | undefined) ?? 'INTERNAL', m.error.code ? m.error.message : `the CRL could not be built: ${m.error.message}`));
    this.afterJob(worker);
  }

  /** The worker is gone: its build rejects, and the next build starts a new one. */
  private onDeath(worker: Worker, what: string): void {
    if (worker !== this.worker) return;
    this.worker = undefined;
    void worker.terminate().catch(() => {});
    const job = this.running;
    this.running = undefined;
    job?.reject(new UpdraftError('INTERNAL', `the CRL could not be built: its worker thread ${what}; ask again`));
    this.next();
  }

  private afterJob(worker: Worker): void {
    this.next();
    if (this.running) return;
    // idle: it must not keep the process alive, and is stopped after a while
    worker.unref();
    clearTimeout(this.idle);
    this.idle = setTimeout(() => {
      if (this.worker === worker && !this.running) {
        this.worker = undefined;
        void worker.terminate().catch(() => {});
      }
    }, this.options.idleMs);
    this.idle.unref();
  }
}

/**
 * The process's builder: one build at a time per process, whatever asks (the broker route,
 * mosquitto-config --offline). Module-level on purpose: a worker thread is a process resource,
 * like the thread pool, and crlFile is a plain function.
 */
export const crlBuilder = new CrlBuilder();

/** A CRL (PEM) of `input` built off the calling thread (crlBuilder). */
export async function buildCrlOffThread(input: CrlDerInput): Promise<string> {
  return (await crlBuilder.build(input)).pem;
}
