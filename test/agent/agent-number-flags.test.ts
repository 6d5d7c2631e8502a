/**
 * `updraft agent` reads the numbers of its options strictly, as `updraft server`, `sim` and
 * `demo` read theirs (QA, fuzzing the configuration): Number() took `--install-gate-retry 0x10`
 * as 16 s, `1e3` as 1000 and ' 5' as 5, and `--renew-certificate-days ''` (a unit file's
 * "$RENEW_DAYS", unset) as 0, which turned the certificate's renewal off without a word: the
 * broker refused the device once its certificate expired. Each is refused, exit 2, one line,
 * before the agent starts. So is an empty `--install-gate` or `--health-check` (`sh -c ''`
 * exits 0: every build was installed at once, and kept). The real `updraft` command.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startCli } from '../helpers/cli.ts';
import { freePort } from '../helpers/free-port.ts';

/** Runs `updraft ...args`, which must exit by itself within 20 s (an agent started instead is killed and the test fails). */
async function exitsAtOnce(args: string[]): Promise<{ code: number | null; output: string }> {
  const p = startCli(args);
  const code = await Promise.race([new Promise<number | null>((resolve) => p.child.once('close', resolve)), new Promise<'running'>((resolve) => setTimeout(resolve, 20_000, 'running'))]);
  if (code === 'running') {
    await p.kill('SIGKILL');
    return { code: null, output: `(still running after 20 s: the agent started)\n${p.output()}` };
  }
  return { code, output: p.output() };
}

describe("updraft agent's numbers and commands", () => {
  let root: string;
  let base: string[];
  before(async () => {
    root = await mkdtemp(path.join(os.tmpdir(), 'updraft-agent-numbers-'));
    // nothing listens there: an agent that starts only retries, and the guard ends it
    base = ['agent', '--device', 'num-1', '--install-dir', path.join(root, 'num-1'), '--broker', `mqtt://127.0.0.1:${await freePort()}`, '--password', 'x', '--insecure-allow-unsigned'];
  });
  after(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it('refuses seconds that are not a decimal number, and an empty --renew-certificate-days', async () => {
    const cases: [string, string, RegExp][] = [
      ['--install-gate-retry', '0x10', /^updraft: error: invalid agent options: --install-gate-retry must be a number of seconds of at least 1\n$/],
      ['--install-gate-retry', '1e3', /^updraft: error: invalid agent options: --install-gate-retry must be a number of seconds of at least 1\n$/],
      ['--install-gate-max-wait', ' 5000', /^updraft: error: invalid agent options: --install-gate-max-wait must be a number of seconds of at least 1\n$/],
      ['--health-check-timeout', '0x10', /^updraft: error: --health-check-timeout must be a number of seconds from 0\.001 to 2147483 \(about 24\.8 days\), got 0x10\n$/],
      ['--renew-certificate-days', '', /^updraft: error: --renew-certificate-days must be a whole number of days from 0 to 365\n$/],
      ['--renew-certificate-days', '0x1e', /^updraft: error: --renew-certificate-days must be a whole number of days from 0 to 365\n$/],
    ];
    for (const [flag, value, expected] of cases) {
      const r = await exitsAtOnce([...base, flag, value]);
      assert.equal(r.code, 2, `${flag} ${JSON.stringify(value)} is bad input: ${r.output}`);
      assert.match(r.output, expected);
    }
  });

  it('refuses an empty --install-gate and --health-check: sh -c \'\' exits 0, which installed and kept every build without a word', async () => {
    const cases: [string, string][] = [['--install-gate', 'installs a verified build at once'], ['--health-check', 'keeps an installed build unchecked']];
    for (const [flag, without] of cases) {
      for (const value of ['', '  ']) {
        const r = await exitsAtOnce([...base, flag, value]);
        assert.equal(r.code, 2, `${flag} ${JSON.stringify(value)} is bad input: ${r.output}`);
        assert.equal(r.output, `updraft: error: ${flag} is empty: give the command, or leave the option out (the agent then ${without})\n`);
      }
    }
  });

  it('takes decimal seconds and whole days as before', async () => {
    const agent = startCli([...base, '--install-gate-retry', '1.5', '--install-gate-max-wait', '600', '--health-check-timeout', '0.25', '--renew-certificate-days', '0']);
    try {
      await agent.waitFor(/num-1: starting/, 20_000);
    } finally {
      await agent.kill('SIGKILL');
    }
  });
});
