/**
 * The health check that runs, recorded in the install directory, so that one a crash left
 * running (the agent killed with SIGKILL, the check in its own process group lives on) is
 * killed before the restarted agent checks again: two checks at once (the same port, the
 * same device) can fail each other.
 *
 * A process group id alone is not safe to kill later: after a reboot, or once the group is
 * gone, the number may be another group's. So the record holds the group leader's identity on
 * Linux (the boot id and the leader's start time, from /proc), and a group is killed only
 * while its leader is that same process. Elsewhere (no /proc) nothing is killed; the record
 * only lets the restart say that a check may still run.
 */
import { readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { asUpdraftError } from '../errors.ts';
import type { Logger } from '../util/logger.ts';

/** What is recorded of a running check. */
interface CheckRecord {
  /** Its process group id (the `/bin/sh` that runs the command leads it). */
  pgid: number;
  /** `/proc/sys/kernel/random/boot_id` when it started (Linux). */
  bootId?: string;
  /** The leader's start time, in clock ticks since boot (`/proc/<pid>/stat`, field 22). */
  startTime?: string;
}

/** Records the check led by `pgid` in `file` (not synced: a power cut leaves no check running). */
export async function recordCheck(file: string, pgid: number): Promise<void> {
  const identity = await leaderIdentity(pgid);
  const record: CheckRecord = { pgid, ...identity };
  await writeFile(file, JSON.stringify(record) + '\n', { mode: 0o600 });
}

/** Forgets the record of a check that ended. */
export async function forgetCheck(file: string): Promise<void> {
  await rm(file, { force: true });
}

/**
 * Kills the check recorded in `file`, if one is, and it still runs as the same process (a
 * crash ended the agent while it ran); then forgets it. Never throws: a check that cannot be
 * killed is logged, and the new one runs all the same.
 */
export async function killLeftoverCheck(file: string, log: Logger): Promise<void> {
  let record: CheckRecord;
  try {
    record = JSON.parse(await readFile(file, 'utf8')) as CheckRecord;
  } catch {
    return; // none (the usual case), or unreadable: nothing to go by
  }
  try {
    const pgid = record.pgid;
    if (!Number.isSafeInteger(pgid) || pgid <= 1) return;
    if (record.bootId === undefined || record.startTime === undefined) {
      log.warn('the health check of the interrupted install may still run; its process group is not killed: this system does not tell whether it is the same one', { pgid });
      return;
    }
    const now = await leaderIdentity(pgid);
    // another boot, or its leader is gone (the number may be another group's by now): not ours
    if (now?.bootId !== record.bootId || now.startTime !== record.startTime) return;
    process.kill(-pgid, 'SIGKILL');
    // SIGKILL is sent, not done: the group's processes end a moment later, and the new check
    // must not start beside them (a port they hold, a file they write). CI saw one still
    // running when the new check began
    const gone = await groupEnded(pgid, GROUP_END_WAIT_MS);
    log.warn('killed the health check the interrupted install left running', { pgid, ...(gone ? {} : { stillRunningAfterMs: GROUP_END_WAIT_MS }) });
  } catch (err) {
    log.warn('cannot kill the health check the interrupted install left running', { pgid: record.pgid, error: asUpdraftError(err).message });
  } finally {
    await forgetCheck(file).catch(() => {});
  }
}

/** How long the restart waits for a killed check's processes to end. */
const GROUP_END_WAIT_MS = 2_000;

/** Waits until no process of group `pgid` runs (zombies, which hold nothing, aside); false after `ms`. */
async function groupEnded(pgid: number, ms: number): Promise<boolean> {
  // monotonic: on the wall clock, a step back while waiting stretched the wait by its length
  const deadline = performance.now() + ms;
  for (;;) {
    if (!(await groupRuns(pgid))) return true;
    if (performance.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Whether a process of group `pgid` runs (not a zombie), from /proc. */
async function groupRuns(pgid: number): Promise<boolean> {
  const pids = (await readdir('/proc').catch(() => [] as string[])).filter((n) => /^\d+$/.test(n));
  for (const pid of pids) {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => undefined);
    if (stat === undefined) continue;
    // "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (Number(fields[2]) === pgid && fields[0] !== 'Z') return true;
  }
  return false;
}

/**
 * The boot id and start time of process `pid` while it leads its own group (Linux); undefined
 * when it does not exist, leads no group, or the system has no /proc. A zombie still counts:
 * its pid, and so its group id, is not given to another process until it is reaped.
 */
async function leaderIdentity(pid: number): Promise<{ bootId: string; startTime: string } | undefined> {
  try {
    const [stat, bootId] = await Promise.all([readFile(`/proc/${pid}/stat`, 'utf8'), readFile('/proc/sys/kernel/random/boot_id', 'utf8')]);
    // "pid (comm) state ppid pgrp session ... starttime ...": comm may hold spaces and parentheses
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const pgrp = Number(fields[2]);
    const startTime = fields[19];
    if (pgrp !== pid || startTime === undefined || !/^\d+$/.test(startTime)) return undefined;
    return { bootId: bootId.trim(), startTime };
  } catch {
    return undefined;
  }
}
