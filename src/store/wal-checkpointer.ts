/**
 * Checkpoints the embedded store's WAL on a worker thread, so the event loop never copies it.
 *
 * SQLite checkpoints a WAL database inside the commit that takes the WAL past 1,000 pages
 * (`wal_autocheckpoint`): that commit copies the WAL's pages into the database file and
 * fsyncs both files, on the connection's thread. better-sqlite3 being synchronous, that is
 * the event loop: in a fleet update, a checkpoint every second or so held it for 10-55 ms
 * (strace of the server). Counted in the server over a 5,000-device update, in three
 * alternating runs each, the commits' time beyond their statements fell from 357-512 ms to
 * 247-314 ms with the checkpoints moved here (about 2% of the update's busy time).
 *
 * Here a second connection, on a worker thread, runs PASSIVE checkpoints every
 * `intervalMs`: they copy what is committed without taking the write lock, so the event
 * loop's commits go on meanwhile. Writes committed during a pass are left to the next one;
 * a pass repeats at once while it could not catch up (a few times), because SQLite reuses
 * the WAL from its start only once every frame in it has been copied. The event loop's
 * connection keeps SQLite's own checkpoint as a bound (`FALLBACK_PAGES`): should this
 * worker stop or fall behind, the WAL still cannot grow without end. What stays on the
 * event loop: the commit that reuses the WAL from its start fsyncs the WAL's header (SQLite
 * does that for safety), at most once per pass. The WAL file grows larger than with SQLite's
 * own checkpoints under load (11-23 MB instead of 4 MB in a 5,000-device update).
 *
 * The worker is plain CommonJS evaluated from a string: it needs no TypeScript loader, and
 * the store works the same under `tsx`, `node --test` and a bundled build.
 */
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import type { Logger } from '../util/logger.ts';

/**
 * Pages after which the event loop's connection checkpoints by itself, as SQLite does by
 * default at 1,000: the bound when the worker is behind or gone (25,000 pages of 4 KiB, ~100 MB).
 */
export const FALLBACK_PAGES = 25_000;

/** What one checkpoint pass found and did, in WAL frames (pages), as `PRAGMA wal_checkpoint` reports. */
export interface CheckpointPass {
  /** Frames in the WAL when the pass ended. */
  log: number;
  /** Of those, frames copied into the database file. */
  checkpointed: number;
}

/** Options of a WalCheckpointer. */
export interface WalCheckpointerOptions {
  /** The SQLite database file (in WAL mode). */
  path: string;
  /** Pause between passes, in milliseconds. */
  intervalMs: number;
  logger: Logger;
}

/** Passes repeated at once while the WAL has frames the last pass could not copy. */
const CATCH_UP_PASSES = 4;

const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const Database = require(workerData.module);
const db = new Database(workerData.path, { fileMustExist: true });
// a checkpoint fsyncs the WAL before copying it and the database file after
db.pragma('synchronous = NORMAL');

let timer;
let told = '';
function pass() {
  try {
    let result;
    for (let i = 0; i < ${CATCH_UP_PASSES}; i++) {
      result = db.pragma('wal_checkpoint(PASSIVE)')[0];
      if (result.log <= result.checkpointed) break;
    }

    // told when it changed: an idle store's WAL, copied and not yet reused, says nothing new
    const now = result.log + '/' + result.checkpointed;
    if (result.log > 0 && now !== told) parentPort.postMessage({ pass: { log: result.log, checkpointed: result.checkpointed } });
    told = now;
  } catch (err) {
    parentPort.postMessage({ error: String(err && err.message || err) });
  }
  timer = setTimeout(pass, workerData.intervalMs);
}
parentPort.on('message', (message) => {
  if (message !== 'stop') return;
  clearTimeout(timer);
  db.close();
  parentPort.close();
});
parentPort.postMessage({ ready: true });
timer = setTimeout(pass, workerData.intervalMs);
`;

/** A worker thread that checkpoints one SQLite file's WAL; `start()`, then `stop()` before closing the file. */
export class WalCheckpointer {
  private readonly options: WalCheckpointerOptions;
  private worker: Worker | undefined;
  private passes = 0;
  private last: CheckpointPass | undefined;
  private lastError: string | undefined;

  constructor(options: WalCheckpointerOptions) {
    this.options = options;
  }

  /** Starts the worker; resolves once its connection is open. */
  async start(): Promise<void> {
    if (this.worker) return;
    const module = createRequire(import.meta.url).resolve('better-sqlite3');
    const worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { module, path: this.options.path, intervalMs: this.options.intervalMs } });
    // never the reason the process stays up: a store left open must not hang its exit
    worker.unref();
    await new Promise<void>((resolve, reject) => {
      const failed = (err: Error) => reject(err);
      worker.once('error', failed);
      worker.once('message', () => {
        worker.off('error', failed);
        resolve();
      });
    });
    worker.on('message', (message: { pass?: CheckpointPass; error?: string }) => {
      if (message.pass) {
        this.passes++;
        this.last = message.pass;
      }
      // said once per kind of failure, not at every pass: SQLite's own checkpoints take over
      if (message.error && message.error !== this.lastError) {
        this.lastError = message.error;
        this.options.logger.warn('WAL checkpoint failed; SQLite checkpoints by itself past the bound', { path: this.options.path, error: message.error, fallbackPages: FALLBACK_PAGES });
      }
    });
    worker.on('error', (err) => this.options.logger.error('WAL checkpoint worker stopped', { path: this.options.path, error: err.message }));
    this.worker = worker;
  }

  /** Passes that found something new in the WAL, and the last one's figures. */
  stats(): { passes: number; last?: CheckpointPass } {
    return this.last ? { passes: this.passes, last: this.last } : { passes: this.passes };
  }

  /** Closes the worker's connection and waits for the thread to end. Safe to call twice. */
  async stop(): Promise<void> {
    const worker = this.worker;
    if (!worker) return;
    this.worker = undefined;
    const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
    // held while it closes: an unreferenced worker would let the loop end before its exit
    worker.ref();
    worker.postMessage('stop');
    await exited;
  }
}
