/**
 * Runs the operator's health-check command against a freshly installed slot (pattern step 7:
 * "health-checks, or rolls back"). Exit code 0 keeps the new software; anything else, a
 * timeout or an abort rejects it with a reason the FAILURE report can carry.
 */
import { spawn } from 'node:child_process';
import { UpdraftError } from '../errors.ts';

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
}

/** Keep only the tail of stderr: the reason is on its last line, and memory stays bounded. */
const STDERR_TAIL = 4096;

/** Resolves when the command exits 0; throws UpdraftError('HEALTH_CHECK', reason) otherwise. */
export function runHealthCheck(opts: HealthCheckOptions): Promise<void> {
  return new Promise((resolve, reject) => {
    if (opts.signal?.aborted) {
      reject(new UpdraftError('HEALTH_CHECK', 'health check aborted: the agent is stopping'));
      return;
    }
    // detached: the command gets its own process group, so a timeout kills its children too
    const child = spawn('/bin/sh', ['-c', opts.command], {
      cwd: opts.cwd,
      env: { ...process.env, ...opts.env },
      stdio: ['ignore', 'ignore', 'pipe'],
      detached: true,
    });
    let stderr = '';
    let failure: string | undefined;
    const kill = (why: string) => {
      failure ??= why;
      try {
        if (child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
      } catch {
        child.kill('SIGKILL');
      }
    };
    const timer = setTimeout(() => kill(`health check timed out after ${opts.timeoutMs} ms`), opts.timeoutMs);
    const onAbort = () => kill('health check aborted: the agent is stopping');
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (chunk: string) => {
      stderr = (stderr + chunk).slice(-STDERR_TAIL);
    });
    const done = (err: UpdraftError | undefined) => {
      clearTimeout(timer);
      opts.signal?.removeEventListener('abort', onAbort);
      if (err) reject(err);
      else resolve();
    };
    child.on('error', (err) => done(new UpdraftError('HEALTH_CHECK', `health check could not run: ${err.message}`, { cause: err })));
    child.on('close', (code, sig) => {
      if (failure) return done(new UpdraftError('HEALTH_CHECK', failure));
      if (code === 0) return done(undefined);
      const last = lastLine(stderr);
      const how = code === null ? `killed by ${sig}` : `exit code ${code}`;
      done(new UpdraftError('HEALTH_CHECK', `health check failed: ${how}${last ? `: ${last}` : ''}`));
    });
  });
}

function lastLine(text: string): string {
  const lines = text.split('\n').map((l) => l.trim()).filter((l) => l.length > 0);
  return (lines[lines.length - 1] ?? '').slice(0, 200);
}
