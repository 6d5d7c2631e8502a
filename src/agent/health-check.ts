/**
 * Runs the operator's health-check command against a freshly installed slot (pattern step 7:
 * "health-checks, or rolls back"). Exit code 0 keeps the new software; anything else, a
 * timeout or an abort rejects it with a reason the FAILURE report can carry. The install
 * gate, asked before installing, runs the same way.
 */
import { spawn } from 'node:child_process';
import { UpdraftError } from '../errors.ts';
import type { Logger } from '../util/logger.ts';

/** How to run one health check. */
export interface HealthCheckOptions {
  /** Command line, run with `/bin/sh -c`. */
  command: string;
  /** Extra environment (added to the agent's own). */
  env: Record<string, string>;
  /** Working directory. */
  cwd: string;
  /** Killed and failed after this many ms. */
  timeoutMs: number;
  signal?: AbortSignal;
  /** Where the health check's output (stdout and stderr, in the order it came) goes, line by line, once it ended (the job's log: `job-log.ts`). */
  logger?: Logger;
  /** Told the process group id of the command once it is started (the slot installer records it: `check-record.ts`). */
  onSpawn?: (pgid: number) => void;
}

/** Keep only the tail of stderr (the reason is on its last line) and of the output, so memory stays bounded. */
const STDERR_TAIL = 4096;

/** How a script ended: its exit code (null when killed), and the last line of its stderr; `failure` when it timed out, was aborted or could not run. */
export interface ScriptEnd {
  code: number | null;
  signal: NodeJS.Signals | null;
  lastLine: string;
  /** The last 4 KiB of its stderr. */
  stderr: string;
  /** The last 4 KiB of what it wrote on stdout and stderr, in the order it came (for a log). */
  output: string;
  failure?: string;
}

/** Resolves when the command exits 0; throws UpdraftError('HEALTH_CHECK', reason) otherwise. */
export async function runHealthCheck(opts: HealthCheckOptions): Promise<void> {
  const end = await runScript(opts, 'health check');
  if (opts.logger) {
    const lines = end.output.split('\n').map((l) => l.trimEnd()).filter((l) => l.length > 0);
    for (const line of lines) opts.logger.info(`health check: ${line}`);
    opts.logger.info('health check ended', { exitCode: end.code, ...(end.signal ? { signal: end.signal } : {}), ...(end.failure ? { failure: end.failure } : {}) });
  }
  if (end.failure) throw new UpdraftError('HEALTH_CHECK', end.failure);
  if (end.code === 0) return;
  const how = end.code === null ? `killed by ${end.signal}` : `exit code ${end.code}`;
  throw new UpdraftError('HEALTH_CHECK', `health check failed: ${how}${end.lastLine ? `: ${end.lastLine}` : ''}`);
}

/**
 * The device's install gate (`updraft agent --install-gate <cmd>`), asked before a verified
 * build is installed: exit 0, install now; exit 75 (EX_TEMPFAIL), not now (the last line of
 * stderr says why; asked again later); any other exit, not this build. A gate that does not
 * answer within the timeout counts as "not now".
 */
export async function runInstallGate(opts: HealthCheckOptions): Promise<{ go: true } | { later: string } | { refuse: string }> {
  const end = await runScript(opts, 'install gate');
  if (end.failure) return { later: end.failure };
  if (end.code === 0) return { go: true };
  if (end.code === 75) return { later: end.lastLine || 'exit code 75 (not now)' };
  return { refuse: `${end.code === null ? `killed by ${end.signal}` : `exit code ${end.code}`}${end.lastLine ? `: ${end.lastLine}` : ''}` };
}

/** Runs `opts.command` with `/bin/sh -c` in its own process group; resolves with how it ended. Also the broker password file watcher's reload command. */
export function runScript(opts: HealthCheckOptions, what: string): Promise<ScriptEnd> {
  return new Promise((resolve) => {
    if (opts.signal?.aborted) {
      resolve({ code: null, signal: null, lastLine: '', stderr: '', output: '', failure: `${what} aborted: the agent is stopping` });
      return;
    }
    // detached: the command gets its own process group, so a timeout kills its children too.
    // stdout is read too (a script's own words are often there), for the log; the reason is stderr's
    const child = spawn('/bin/sh', ['-c', opts.command], {
      cwd: opts.cwd,
      env: { ...process.env, ...opts.env },
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    // detached: its pid is its process group's id
    if (child.pid !== undefined) opts.onSpawn?.(child.pid);
    let stderr = '';
    let output = '';
    let failure: string | undefined;
    const kill = (why: string) => {
      failure ??= why;
      try {
        if (child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
      } catch {
        child.kill('SIGKILL');
      }
    };
    const timer = setTimeout(() => kill(`${what} timed out after ${opts.timeoutMs} ms`), opts.timeoutMs);
    const onAbort = () => kill(`${what} aborted: the agent is stopping`);
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (chunk: string) => {
      stderr = (stderr + chunk).slice(-STDERR_TAIL);
      output = (output + chunk).slice(-STDERR_TAIL);
    });
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk: string) => {
      output = (output + chunk).slice(-STDERR_TAIL);
    });
    const done = (end: ScriptEnd) => {
      clearTimeout(timer);
      opts.signal?.removeEventListener('abort', onAbort);
      resolve(end);
    };
    child.on('error', (err) => done({ code: null, signal: null, lastLine: '', stderr, output, failure: `${what} could not run: ${err.message}` }));
    child.on('close', (code, sig) => done({ code, signal: sig, lastLine: lastLine(stderr), stderr, output, ...(failure ? { failure } : {}) }));
  });
}

function lastLine(text: string): string {
  const lines = text.split('\n').map((l) => l.trim()).filter((l) => l.length > 0);
  return (lines[lines.length - 1] ?? '').slice(0, 200);
}
