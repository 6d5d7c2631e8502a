/** `updraft demo`: the whole pattern for simulated devices, judged by what they reported. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { runCli } from '../helpers/cli.ts';

describe('updraft demo', () => {
  it('updates every device and exits 0 with one summary line', async () => {
    const r = await runCli(['demo', '--devices', '20']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^demo: 20\/20 devices updated to 2\.0\.0 in \d+\.\d s$/m);
  });

  it('exits non-zero and names the devices when some report FAILURE', async () => {
    const r = await runCli(['demo', '--devices', '10', '--failure-rate', '1']);
    assert.equal(r.code, 1);
    assert.match(r.stdout, /^demo: 0\/10 devices updated to 2\.0\.0 in/m);
    assert.match(r.stderr, /demo-\d+: FAILURE on 1\.0\.0: /);
  });

  it('refuses a bad device count in one line', async () => {
    const r = await runCli(['demo', '--devices', 'lots']);
    assert.notEqual(r.code, 0);
    assert.equal(r.stderr.trim(), 'updraft: error: --devices must be an integer from 1 to 20000');
  });
});
