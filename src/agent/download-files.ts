/** Where the agent keeps partial downloads: `<stateDir>/downloads/<jobId>.part`. */
import { createHash } from 'node:crypto';
import { readdir, rm } from 'node:fs/promises';
import path from 'node:path';

/** The part file of a job; a job id that is not a safe file name (`/`, `..`) is hashed. */
export function partFile(stateDir: string, jobId: string): string {
  const safe = /^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,99}$/.test(jobId) ? jobId : createHash('sha256').update(jobId).digest('hex').slice(0, 32);
  return path.join(stateDir, 'downloads', `${safe}.part`);
}

/** Deletes every part file except the one of `keepJobId`. */
export async function removeStaleDownloads(stateDir: string, keepJobId: string | undefined): Promise<void> {
  const dir = path.join(stateDir, 'downloads');
  const keep = keepJobId === undefined ? undefined : path.basename(partFile(stateDir, keepJobId));
  const names = await readdir(dir).catch(() => [] as string[]);
  await Promise.all(names.filter((n) => n !== keep).map((n) => rm(path.join(dir, n), { force: true })));
}
