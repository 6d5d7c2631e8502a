/** AWS job status updates as the device's `reported.software` report (src/aws/job-report.ts). */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { reportFor } from '../../src/aws/job-report.ts';
import { checkReportedSoftware } from '../../src/protocol/software.ts';

const sw = { name: 'fw', version: '2.0.0', sha256: 'a'.repeat(64), size: 10, jobId: 'J' };
const running = { name: 'fw', version: '1.0.0', status: 'SUCCESS', jobId: 'J0', statusDetails: { old: 'x' } };

describe('reportFor', () => {
  it('IN_PROGRESS keeps what runs, takes the phase from statusDetails, and replaces statusDetails whole', () => {
    const r = reportFor('IN_PROGRESS', 'J', sw, running, { phase: 'INSTALLING' });
    assert.deepEqual(r, { name: 'fw', version: '1.0.0', error: null, jobId: 'J', status: 'INSTALLING', progress: null, statusDetails: { old: null, phase: 'INSTALLING' } });
    const again = reportFor('IN_PROGRESS', 'J', sw, { ...r, statusDetails: { phase: 'INSTALLING' } }, undefined);
    assert.equal(again.status, 'INSTALLING', 'the last phase of the same job');
    assert.equal(again.statusDetails, undefined, 'unchanged when not given');
  });

  it("SUCCEEDED reports the job's software, so the delta empties", () => {
    const r = reportFor('SUCCEEDED', 'J', sw, running, undefined);
    assert.deepEqual([r.name, r.version, r.sha256, r.size, r.status, r.jobId], ['fw', '2.0.0', sw.sha256, 10, 'SUCCESS', 'J']);
    assert.equal(r.statusDetails, null, "another job's details are cleared");
  });

  it('FAILED and REJECTED report what still runs and the reason', () => {
    for (const status of ['FAILED', 'REJECTED'] as const) {
      const r = reportFor(status, 'J', sw, running, { reason: 'disk full' });
      assert.deepEqual([r.version, r.status, r.error], ['1.0.0', 'FAILURE', 'disk full']);
    }
    assert.equal(reportFor('REJECTED', 'J', sw, undefined, undefined).error, 'REJECTED by the device');
    assert.equal(reportFor('FAILED', 'J', sw, undefined, undefined).version, 'unknown');
    // a shadow written before the replica checked these fields: what it cannot vouch for is left out
    const legacy = { name: 7, version: 5, sha256: null, size: '1024', status: 'IDLE' };
    const r = reportFor('FAILED', 'J', sw, legacy, { reason: 'x' });
    assert.deepEqual([r.name, r.version, r.sha256, r.size], [undefined, 'unknown', undefined, undefined]);
    assert.doesNotThrow(() => checkReportedSoftware(r), 'the replica takes the report');
  });
});
