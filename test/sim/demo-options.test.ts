/** `updraft demo`'s options are checked before its server starts: one line, exit 2. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { runCli } from '../helpers/cli.ts';

describe('demo options', () => {
  it('refuses a bad --devices, --artifact-kb, --timeout or --failure-rate with one line and exit 2, before anything starts', async () => {
    for (const [args, message] of [
      [['--timeout', 'abc'], 'updraft: error: --timeout must be a whole number of seconds from 1 to 86400'],
      [['--timeout=-5'], 'updraft: error: --timeout must be a whole number of seconds from 1 to 86400'],
      [['--timeout', '0'], 'updraft: error: --timeout must be a whole number of seconds from 1 to 86400'],
      [['--timeout', ''], 'updraft: error: --timeout must be a whole number of seconds from 1 to 86400'],
      [['--failure-rate', ''], 'updraft: error: --failure-rate must be a number from 0 to 1'],
      // Number() took these as 1000, 2 and 0x10: now digits only, as for every other whole number
      [['--devices', '1e3'], 'updraft: error: --devices must be an integer from 1 to 20000'],
      [['--devices', '2.0'], 'updraft: error: --devices must be an integer from 1 to 20000'],
      [['--artifact-kb', '0x10'], 'updraft: error: --artifact-kb must be a positive integer'],
    ] as const) {
      const r = await runCli(['demo', '--devices', '1', ...args]);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.equal(r.stderr.trim(), message, args.join(' '));
      assert.equal(r.stdout, '', 'no demo ran');
    }
  });
});
