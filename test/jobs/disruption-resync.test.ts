/**
 * The resync after a store disruption (jobs/disruption-resync.ts) on a real server's store and
 * replica, devices on its embedded broker: a disruption during a pass starts the pass over,
 * never a second one beside it; stop() ends a wait at once; an instance that does not lead
 * sends nothing; a pass on a lead taken says so in its lines. The disruption itself is what a
 * PostgreSQL store reports (onDisruption), given here by hand (the server's store is SQLite);
 * test/store/postgres-restore-resend.test.ts has the real one, a restore.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { DisruptionResync, LEAD_TAKEN, type DisruptionResyncDeps } from '../../src/jobs/disruption-resync.ts';
import { answerTopic } from '../../src/protocol/topics.ts';
import { createLogger } from '../../src/util/logger.ts';
import { eventually } from '../helpers/cli.ts';
import { TestClient } from '../helpers/mqtt-client.ts';
import { registerDevice, startTestServer, type TestServer } from '../helpers/server.ts';
import { addArtifact, deploy } from '../security/support.ts';

type Line = { level: string; msg: string; [field: string]: unknown };

describe('the resync of open executions after a store disruption', () => {
  let ts: TestServer;
  const devices = ['dr-1', 'dr-2', 'dr-3'];
  const clients: TestClient[] = [];

  before(async () => {
    ts = await startTestServer();
    await addArtifact(ts, '2.0.0', Buffer.from('fw 2.0.0 '.repeat(300)));
    for (const id of devices) {
      const c = await TestClient.connect(ts.mqttUrl, id, { username: id, password: await registerDevice(ts, id) });
      await c.subscribe(answerTopic({ deviceId: id, name: '' }, 'update', 'delta'));
      clients.push(c);
    }
    const jobId = await deploy(ts, devices, 'fw@2.0.0');
    await eventually(async () => {
      const rows = await ts.server.store.getExecutions(devices.map((deviceId) => ({ jobId, deviceId })));
      return rows.every((e) => e?.dispatchedAt !== undefined) ? true : undefined;
    }, 30_000, 'every command sent');
  });
  after(async () => {
    for (const c of clients) await c.client.endAsync().catch(() => undefined);
    await ts.close();
  });

  /** A resync on the server's store and replica; `disrupt` plays the store's onDisruption. */
  const resync = (over: Partial<DisruptionResyncDeps> = {}) => {
    const lines: Line[] = [];
    let listener: ((reason: string) => void) | undefined;
    const store = ts.server.store;
    const r = new DisruptionResync({
      store: {
        onDisruption: (l) => {
          listener = l;
          return () => (listener = undefined);
        },
        listJobs: (o) => store.listJobs(o),
        listJobExecutions: (id, o) => store.listJobExecutions(id, o),
      },
      replica: ts.server.replica,
      isLeader: () => true,
      logger: createLogger({ level: 'info', format: 'json', write: (l) => lines.push(JSON.parse(l) as Line) }),
      settleMs: 0,
      firstDelayMs: 10,
      pageSize: 1,
      perSecond: 1_000_000,
      ...over,
    });
    return { r, lines, disrupt: (reason = 'test') => listener?.(reason) };
  };

  it('a disruption during a pass starts it over; never two passes at once', async () => {
    let active = 0;
    let most = 0;
    let calls = 0;
    let again: (() => void) | undefined;
    const replica: DisruptionResyncDeps['replica'] = {
      resendDelta: async (deviceId, onlyIf) => {
        calls++;
        active++;
        most = Math.max(most, active);
        try {
          // the second disruption arrives while the first pass sends its first page
          if (calls === 1) again?.();
          return await ts.server.replica.resendDelta(deviceId, onlyIf);
        } finally {
          active--;
        }
      },
    };
    const { r, lines, disrupt } = resync({ replica });
    again = () => disrupt('second');
    await r.start();
    try {
      disrupt('first');
      await eventually(async () => (r.busy ? undefined : true), 30_000, 'the resync done');
      const ends = lines.filter((l) => l.msg.startsWith('store disruption: update commands') || l.msg.includes('cut short'));
      assert.deepEqual(
        ends.map((l) => [l.msg, l.resent]),
        [
          ['store disruption: re-sending the update commands of open executions cut short (disrupted again)', 1],
          ['store disruption: update commands of open executions re-sent', 3],
        ],
        'the first pass cut short after its page, one whole pass after it',
      );
      assert.equal(lines.filter((l) => l.msg.startsWith('store disruption: re-sending the update commands of open executions (')).length, 2, 'two starts, one after the other');
      assert.equal(most, 1, 'one page (of one device) at a time');
      assert.equal(calls, 4);
      for (const c of clients) assert.ok(c.log.filter((m) => m.topic.endsWith('/update/delta')).length >= 2, `${c.client.options.clientId}: its command, then at least one re-sent`);
    } finally {
      await r.stop();
    }
  });

  it("a pass on a lead taken says so in its lines (it said 'store disruption' before), with its counts", async () => {
    const { r, lines } = resync();
    await r.start();
    try {
      r.leadTaken();
      await eventually(async () => (r.busy ? undefined : true), 30_000, 'the pass done');
      const said = lines.filter((l) => l.level === 'info');
      assert.deepEqual(
        said.map((l) => [l.msg, l.reason]),
        [
          ['lead taken: re-sending the update commands of open executions (as at every lead taken, in case the database went back or the last leader stopped mid-send)', LEAD_TAKEN],
          ['lead taken: update commands of open executions re-sent', undefined],
        ],
        'the start and end lines name the lead taken',
      );
      assert.deepEqual([said[1]!.jobs, said[1]!.executions, said[1]!.resent, said[1]!.moved, said[1]!.offline, said[1]!.failed], [1, 3, 3, 0, 0, 0], 'the end line keeps its counts');
    } finally {
      await r.stop();
    }
  });

  it('stop() ends the wait for the database at once; an instance that does not lead sends nothing', async () => {
    let calls = 0;
    const counting: DisruptionResyncDeps['replica'] = {
      resendDelta: async (deviceId, onlyIf) => {
        calls++;
        return ts.server.replica.resendDelta(deviceId, onlyIf);
      },
    };
    const waiting = resync({ replica: counting, settleMs: 3_600_000 });
    await waiting.r.start();
    waiting.disrupt();
    assert.equal(waiting.r.busy, true);
    await waiting.r.stop(); // would wait the hour
    assert.equal(waiting.r.busy, false);

    const follower = resync({ replica: counting, isLeader: () => false, leadWaitMs: 30 });
    await follower.r.start();
    try {
      follower.disrupt();
      await eventually(async () => (follower.r.busy ? undefined : true), 30_000, 'the follower gives the pass up');
    } finally {
      await follower.r.stop();
    }
    assert.equal(calls, 0, 'nothing re-sent');
    assert.deepEqual(follower.lines.filter((l) => l.level === 'info'), [], 'no pass on a follower');
  });
});
