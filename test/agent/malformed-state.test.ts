/**
 * A state file whose in-flight job is well formed except for its times or its reason (QA):
 * the agent, on the real broker and HTTP artifact server, resumes it with what it can trust.
 * A `startedAt` that is no ISO time (garbage, missing, the number 12) is counted from when
 * the file was read, so the install gate is asked at its pace and its limit still ends the
 * wait; a saved reason that is no string is reported as a string (the server refuses others).
 */
import assert from 'node:assert/strict';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, it } from 'node:test';
import { SlotInstaller } from '../../src/agent/slot-installer.ts';
import type { JsonObject } from '../../src/protocol/json.ts';
import { nextEvent } from './support/agent-fixture.ts';
import { fixturePerTest } from './support/fixture-per-test.ts';

describe('UpdateAgent: a state file with a malformed time or reason', () => {
  const ctx = fixturePerTest({ level: 'info', format: 'json' });

  async function writeState(inFlight: JsonObject | undefined, finished: JsonObject[] = []): Promise<void> {
    await mkdir(ctx.f.stateDir, { recursive: true });
    await writeFile(path.join(ctx.f.stateDir, 'agent-state.json'), JSON.stringify({ finished, ...(inFlight ? { inFlight } : {}) }));
  }
  const command = (jobId: string) => ({ ...ctx.f.software(jobId), url: ctx.f.http.url(), urlExpiresAt: Math.floor(Date.now() / 1000) + 3600 });

  // also a valid time far in the future or the past (a clock wrong when the command came, set
  // right since): the wait never ended, or the job failed at the first "later"
  for (const [what, startedAt] of [['garbage', 'garbage'], ['missing', undefined], ['a number', 12], ['in the year 2999', '2999-01-01T00:00:00.000Z'], ['in the year 2000', '2000-01-01T00:00:00.000Z']] as const) {
    it(`counts the install gate's wait from its first ask when startedAt is ${what}`, async () => {
      ctx.f.server.desired = ctx.f.software('S1'); // the shadow still asks for it
      await writeState({ jobId: 'S1', command: command('S1'), phase: 'DOWNLOADING', ...(startedAt !== undefined ? { startedAt } : {}) });
      let asks = 0;
      const agent = ctx.f.agent(new SlotInstaller({ dir: ctx.f.installDir }), {
        logger: ctx.logger(),
        installGate: async () => {
          asks++;
          return { later: 'battery low' };
        },
        installGateRetryMs: 200,
        installGateMaxWaitMs: 1500,
      });
      const finished = nextEvent(agent, 'job-finished');
      await agent.start();
      const outcome = await finished;
      assert.equal(outcome.status, 'FAILURE');
      assert.match(outcome.error ?? '', /^the device's install gate put the install off for \d+ s, the 2 s allowed: battery low; nothing installed$/);
      // every 200 ms over 1.5 s: 9 asks, a few more on a busy machine; not one every few ms
      assert.ok(asks >= 2 && asks <= 12, `asked ${asks} times`);
      const waits = ctx.f.server.reportsFor('S1').map((r) => r.waiting as JsonObject | undefined).filter((w) => w);
      assert.ok(waits.length > 0);
      for (const w of waits) assert.equal(typeof w!.nextCheckInSeconds, 'number');
    });
  }

  it('reports a saved outcome whose reason is no string with a string reason', async () => {
    await writeState({ jobId: 'R1', command: command('R1'), phase: 'REPORTING', startedAt: new Date().toISOString(), outcome: { status: 'FAILURE', error: { evil: 1 } } });
    const agent = ctx.f.agent(new SlotInstaller({ dir: ctx.f.installDir }), { logger: ctx.logger() });
    const finished = nextEvent(agent, 'job-finished');
    await agent.start();
    const outcome = await finished;
    assert.equal(outcome.status, 'FAILURE');
    assert.equal(typeof outcome.error, 'string');
    const report = ctx.f.server.reportsFor('R1').at(-1)!;
    assert.equal(report.status, 'FAILURE');
    assert.equal(report.error, outcome.error);
  });

  it('bounds a saved reason too long to report', async () => {
    await writeState({ jobId: 'R2', command: command('R2'), phase: 'REPORTING', startedAt: new Date().toISOString(), outcome: { status: 'FAILURE', error: 'x'.repeat(100_000) } });
    const agent = ctx.f.agent(new SlotInstaller({ dir: ctx.f.installDir }), { logger: ctx.logger() });
    const finished = nextEvent(agent, 'job-finished');
    await agent.start();
    const outcome = await finished;
    assert.ok(typeof outcome.error === 'string' && outcome.error.length <= 2000, `${outcome.error?.length} characters`);
    assert.equal(ctx.f.server.reportsFor('R2').at(-1)!.error, outcome.error);
  });

  it('reports a finished SUCCESS without the error its saved entry carries (no string)', async () => {
    await writeState(undefined, [{ jobId: 'F1', status: 'SUCCESS', error: { evil: 1 }, finishedAt: new Date().toISOString() }]);
    ctx.f.server.desired = ctx.f.software('F1'); // still asked for: the report repeats its outcome
    const agent = ctx.f.agent(new SlotInstaller({ dir: ctx.f.installDir }), { logger: ctx.logger() });
    await agent.start();
    await ctx.f.server.until(() => ctx.f.server.reportsFor('F1').length >= 1, 'the report of F1');
    for (const r of ctx.f.server.reportsFor('F1')) {
      assert.equal(r.status, 'SUCCESS');
      assert.equal(r.error ?? null, null, JSON.stringify(r)); // null clears a reported error
    }
  });
  it('reports a finished SUCCESS without the jobVersion its saved entry carries when that is no string (installed: not a string)', async () => {
    await writeState(undefined, [{ jobId: 'F2', status: 'SUCCESS', installed: { evil: 1 }, finishedAt: new Date().toISOString() }]);
    ctx.f.server.desired = ctx.f.software('F2');
    const agent = ctx.f.agent(new SlotInstaller({ dir: ctx.f.installDir }), { logger: ctx.logger() });
    await agent.start();
    await ctx.f.server.until(() => ctx.f.server.reportsFor('F2').length >= 1, 'the report of F2');
    for (const r of ctx.f.server.reportsFor('F2')) {
      assert.equal(r.status, 'SUCCESS');
      assert.equal(r.jobVersion, null, JSON.stringify(r)); // a string or null: the server refuses others
    }
  });
});
