/** Runs an SDK device script (`sdk-v2-device.ts`) as a child process with its own environment. */
import { spawn } from 'node:child_process';
import path from 'node:path';

/** How the child ended. */
export interface ChildResult {
  code: number | null;
  output: string;
  /** The job ids the device took, from its `JOBS {...}` line. */
  jobs?: { first: string; second: string };
}

/** Runs `script` (relative to this folder) with `env` added; resolves when it exits. */
export function runDevice(script: string, env: Record<string, string>, timeoutMs = 90_000): Promise<ChildResult> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', path.join(import.meta.dirname, script)], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (d) => (output += d));
    child.stderr.on('data', (d) => (output += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('exit', (code) => {
      clearTimeout(timer);
      const m = /^JOBS (.*)$/m.exec(output);
      resolve({ code, output, ...(m ? { jobs: JSON.parse(m[1]!) as { first: string; second: string } } : {}) });
    });
  });
}
