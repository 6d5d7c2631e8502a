/**
 * The simulator's downloader: a real HTTP download of the real artifact, verified for size
 * and SHA-256 exactly like the agent's, but kept in memory instead of written and fsynced
 * to disk. Thousands of simulated devices share one process and one disk; their fsyncs
 * would serialize on libuv's four threads and measure the simulator's disk, not Updraft.
 */
import { createHash } from 'node:crypto';
import { UpdraftError } from '../errors.ts';
import type { Downloader } from '../agent/downloader.ts';

/** Downloads into memory: stops at the announced size, verifies, never touches the disk. */
export const memoryDownloader: Downloader = async (opts) => {
  const res = await fetch(opts.url, { ...(opts.headers ? { headers: opts.headers } : {}), ...(opts.signal ? { signal: opts.signal } : {}) });
  if (res.status !== 200) {
    const body = await res.text().catch(() => '');
    throw Object.assign(new UpdraftError('DOWNLOAD', `HTTP ${res.status}: ${body.slice(0, 200)}`), { status: res.status });
  }
  const hash = createHash('sha256');
  let size = 0;
  if (res.body) {
    for await (const chunk of res.body) {
      size += chunk.length;
      if (size > opts.size) throw new UpdraftError('INTEGRITY', `server sent more than the announced ${opts.size} bytes; download stopped`);
      hash.update(chunk);
      opts.onProgress?.(size, opts.size);
    }
  }
  await opts.beforeVerify?.();
  const sha256 = hash.digest('hex');
  if (size !== opts.size) throw new UpdraftError('INTEGRITY', `size mismatch: expected ${opts.size} bytes, got ${size}`);
  if (sha256 !== opts.sha256) throw new UpdraftError('INTEGRITY', `sha256 mismatch: expected ${opts.sha256}, got ${sha256}`);
  return { file: opts.file, resumedFrom: 0 };
};
