/**
 * An application's event listener that throws (QA: a `status` listener with a bug) against the
 * real broker and HTTP artifact server: the exception is logged and the job goes on, the
 * listeners after it still hear the event, and the outcome is the job's (it turned an
 * installed update into a reported FAILURE).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { StatusEvent } from '../../src/agent/agent-events.ts';
import { SlotInstaller } from '../../src/agent/slot-installer.ts';
import { nextEvent } from './support/agent-fixture.ts';
import { fixturePerTest } from './support/fixture-per-test.ts';

describe('UpdateAgent: an event listener that throws', () => {
  const ctx = fixturePerTest({ level: 'info', format: 'json' });

  for (const on of ['DOWNLOADING', 'SUCCESS'] as const) {
    it(`leaves the outcome alone when it throws on ${on}`, async () => {
      const installer = new SlotInstaller({ dir: ctx.f.installDir });
      const agent = await ctx.started(installer);
      const heard: StatusEvent['status'][] = [];
      agent.on('status', (e) => {
        if (e.status === on) throw new TypeError('listener bug');
      });
      agent.on('status', (e) => heard.push(e.status));
      const finished = nextEvent(agent, 'job-finished');
      await ctx.f.server.setDesired(ctx.f.software('L1'));
      const outcome = await finished;
      assert.equal(outcome.status, 'SUCCESS', outcome.error);
      assert.deepEqual(heard, ['DOWNLOADING', 'VERIFYING', 'INSTALLING', 'SUCCESS']);
      assert.equal(ctx.f.server.reportsFor('L1').at(-1)!.status, 'SUCCESS');
      assert.equal((await installer.current())?.version, '2.0.0');
      const logged = ctx.lines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.msg === 'an event listener threw: ignored');
      assert.equal(logged.length, 1);
      assert.equal(logged[0]!.event, 'status');
      assert.match(String(logged[0]!.error), /listener bug/);
    });
  }

  it('logs an async listener whose promise rejects, and no unhandled rejection is left', async () => {
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    try {
      const installer = new SlotInstaller({ dir: ctx.f.installDir });
      const agent = await ctx.started(installer);
      const heard: StatusEvent['status'][] = [];
      agent.on('status', async (e) => {
        await Promise.resolve();
        if (e.status === 'DOWNLOADING' || e.status === 'SUCCESS') throw new TypeError(`async listener bug on ${e.status}`);
      });
      agent.on('status', (e) => heard.push(e.status));
      const finished = nextEvent(agent, 'job-finished');
      await ctx.f.server.setDesired(ctx.f.software('L2'));
      const outcome = await finished;
      assert.equal(outcome.status, 'SUCCESS', outcome.error);
      assert.deepEqual(heard, ['DOWNLOADING', 'VERIFYING', 'INSTALLING', 'SUCCESS']);
      assert.equal(ctx.f.server.reportsFor('L2').at(-1)!.status, 'SUCCESS');
      assert.equal((await installer.current())?.version, '2.0.0');
      // an unhandled rejection is reported after the microtasks of its turn: give it a few turns
      for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
      assert.deepEqual(unhandled.map(String), []);
      const logged = ctx.lines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.msg === 'an event listener threw: ignored');
      assert.deepEqual(logged.map((l) => l.event), ['status', 'status']);
      assert.match(String(logged[0]!.error), /async listener bug on DOWNLOADING/);
      assert.match(String(logged[1]!.error), /async listener bug on SUCCESS/);
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
  });
});
