/**
 * The worker thread of crl-builder.ts: encodes and signs one CRL per message (crl-der.ts) and
 * posts its PEM back as bytes, the buffer transferred (not copied). Started by a small
 * bootstrap that registers tsx first (a worker does not inherit the loader hooks of
 * `--import tsx` nor of bin/updraft.js's `register()`).
 */
import { parentPort, threadId } from 'node:worker_threads';
import type { KeyObject } from 'node:crypto';
import { UpdraftError } from '../errors.ts';
import { encodeCrl } from './crl-der.ts';

/** A build asked of the worker. */
export interface CrlJob {
  id: number;
  caCertificate: string;
  caKey: KeyObject;
  serials: string[];
  revokedAt: Float64Array;
  issuedAt: number;
  thisUpdate: number;
  nextUpdate?: number;
}

/** The worker's answer to a job. */
export type CrlJobResult = { id: number; threadId: number; pem: Uint8Array } | { id: number; threadId: number; error: { code?: string; message: string } };

const port = parentPort;
if (!port) throw new Error('crl-worker.ts runs in a worker thread (crl-builder.ts starts it)');
port.on('message', (job: CrlJob) => {
  let result: CrlJobResult;
  try {
    const pem = encodeCrl(job);
    result = { id: job.id, threadId, pem };
  } catch (err) {
    result = { id: job.id, threadId, error: { code: err instanceof UpdraftError ? err.code : undefined, message: (err as Error).message } };
  }
  // crlPemBytes gives the PEM its own ArrayBuffer: moved to the server's thread, not copied
  port.postMessage(result, 'pem' in result ? [result.pem.buffer as ArrayBuffer] : []);
});
