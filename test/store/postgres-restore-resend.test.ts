/**
 * A PostgreSQL database restored to a snapshot under a running server: a device's SUCCESS,
 * recorded after the snapshot, is lost, and the restored database holds its execution
 * IN_PROGRESS, its shadow still asking for the job. The device's MQTT connection (the embedded
 * broker's) is not cut by the restore, so it never asks again, and the execution stayed open
 * until a timeout, a reconnect or a new job (QA, 2026-12-06). The instance leading rollouts now
 * re-sends, once the database answers again, the delta of each open execution's shadow
 * (jobs/disruption-resync.ts); the agent answers a command it finished with its outcome again.
 * Not re-sent: a shadow whose desired software no longer names the execution's command (here
 * the restored shadow asks for a take-back of it: the snapshot taken between the stay's write
 * and the execution's, written into the restored database directly).
 *
 * Real parts: a private PostgreSQL reached by the server through a TCP relay, closed for the
 * restore (its sessions cut, as a failover or a restore ends them: the store's onDisruption)
 * and opened again once pg_restore has finished, so the server never reads a half-restored
 * database; pg_dump/pg_restore on the database directly; a real agent (A/B slots) and a raw
 * MQTT client as the devices, on the embedded broker.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { answerTopic, requestTopic } from '../../src/protocol/topics.ts';
import { PostgresStore } from '../../src/store/postgres-store.ts';
import { createLogger } from '../../src/util/logger.ts';
import type { UpdateAgent } from '../../src/agent/agent.ts';
import type { JobFinishedEvent } from '../../src/agent/agent-events.ts';
import { eventually } from '../helpers/cli.ts';
import { TestClient } from '../helpers/mqtt-client.ts';
import { postgresTool, startTestPostgres, unavailable, type TestPostgres } from '../helpers/postgres.ts';
import { registerDevice, startTestServer, type TestServer } from '../helpers/server.ts';
import { startRelay, type TcpRelay } from '../helpers/tcp-relay.ts';
import { addArtifact, deploy, startAgent } from '../security/support.ts';

const pgResult = await startTestPostgres();

type Line = { level: string; msg: string; [field: string]: unknown };

if (!pgResult.ok) {
  const message = unavailable(pgResult as { ok: false; reason: string }, 'PostgreSQL restore re-send test');
  it('a restored database: open executions asked again', (t) => t.skip(message));
} else {
  describe('PostgreSQL restored to a snapshot under a running server: the commands of open executions re-sent', { timeout: 180_000 }, () => {
    const server: TestPostgres = pgResult.server;
    let direct: string;
    let relay: TcpRelay;
    let ts: TestServer;
    let dir: string;
    let agent: UpdateAgent | undefined;
    let raw: TestClient | undefined;
    let finished: JobFinishedEvent[] = [];
    const connections: boolean[] = [];
    const lines: Line[] = [];
    let jobId = '';
    /** Where the log stood when the restore began. */
    let restoreMark = 0;
    /** Where the raw device's messages stood when the restore began. */
    let rawMark = 0;

    const run = (tool: string, args: string[]) => {
      const r = spawnSync(postgresTool(tool), args, { encoding: 'utf8' });
      assert.equal(r.status, 0, `${tool}: ${r.stderr}`);
    };
    const admin = async (sql: string) => {
      const u = new URL(direct);
      u.pathname = '/postgres';
      const c = new pg.Client({ connectionString: u.toString() });
      await c.connect();
      try {
        await c.query(sql);
      } finally {
        await c.end();
      }
    };
    const execution = async (deviceId: string) => (await ts.server.store.getExecutions([{ jobId, deviceId }]))[0];

    before(async () => {
      direct = await server.createDatabase();
      const d = new URL(direct);
      relay = await startRelay({ host: d.hostname, port: Number(d.port) });
      const viaRelay = new URL(direct);
      viaRelay.host = `127.0.0.1:${relay.port}`;
      dir = await mkdtemp(path.join(os.tmpdir(), 'updraft-pg-resend-'));
      const logger = createLogger({ level: 'info', format: 'json', write: (l) => lines.push(JSON.parse(l) as Line) });
      ts = await startTestServer({ logger, flags: { db: viaRelay.toString() } });
      await addArtifact(ts, '2.0.0', Buffer.from('fw 2.0.0 '.repeat(3000)));

      // rs-1: a real agent whose install waits until the snapshot is taken
      let release!: () => void;
      const released = new Promise<void>((r) => (release = r));
      let gated = false;
      const started = await startAgent(ts, dir, 'rs-1', {
        installGate: async () => {
          gated = true;
          await released;
          return { go: true };
        },
      });
      agent = started.agent;
      finished = started.finished;
      // rs-2: a device that hears its command and says nothing (its execution QUEUED, sent)
      const secret = await registerDevice(ts, 'rs-2');
      raw = await TestClient.connect(ts.mqttUrl, 'rs-2', { username: 'rs-2', password: secret });
      await raw.subscribe(answerTopic({ deviceId: 'rs-2', name: '' }, 'update', 'delta'), answerTopic({ deviceId: 'rs-2', name: '' }, 'get', 'accepted'));

      jobId = await deploy(ts, ['rs-1', 'rs-2'], 'fw@2.0.0');
      await eventually(async () => (gated && (await execution('rs-1'))?.status === 'IN_PROGRESS' ? true : undefined), 30_000, 'rs-1 downloaded, waiting at its install gate');
      await eventually(async () => ((await execution('rs-2'))?.dispatchedAt !== undefined ? true : undefined), 30_000, 'rs-2 sent its command');
      await ts.server.tracker.idle();
      run('pg_dump', ['-Fc', '-f', path.join(dir, 'snapshot.dump'), direct]);

      // after the snapshot: rs-1 installs and its SUCCESS is recorded (what the restore loses)
      release();
      await eventually(async () => ((await execution('rs-1'))?.status === 'SUCCEEDED' ? true : undefined), 30_000, 'rs-1 SUCCEEDED before the restore');
      assert.equal(finished.filter((e) => e.jobId === jobId).length, 1);
      agent.on('connection', (e) => connections.push(e.online));

      // the restore: the server's sessions cut and its database unreachable until it is back
      restoreMark = lines.length;
      rawMark = raw.log.length;
      await relay.down();
      await eventually(async () => (lines.slice(restoreMark).some((l) => l.level === 'warn' && /PostgreSQL connection lost|locks' connection/.test(l.msg)) ? true : undefined), 20_000, 'the server saw its connections lost');
      const name = d.pathname.slice(1);
      await admin(`DROP DATABASE ${name} WITH (FORCE)`);
      await admin(`CREATE DATABASE ${name}`);
      run('pg_restore', ['-d', direct, path.join(dir, 'snapshot.dump')]);

      // what the restored database holds: rs-1 open again, asked for the job; rs-2's shadow made
      // to ask for the take-back of its command instead (its execution still open)
      const restored = new PostgresStore({ url: direct });
      await restored.start();
      try {
        const [e1, e2] = await restored.getExecutions([
          { jobId, deviceId: 'rs-1' },
          { jobId, deviceId: 'rs-2' },
        ]);
        assert.equal(e1?.status, 'IN_PROGRESS', 'the restored database lost rs-1 SUCCESS');
        assert.ok(e2?.status === 'QUEUED' && e2.dispatchedAt !== undefined, `rs-2's execution open and sent (${e2?.status})`);
        const s1 = (await restored.getShadow('rs-1', ''))!;
        assert.equal((s1.state.desired?.software as { jobId?: string } | undefined)?.jobId, jobId, 'the restored shadow asks rs-1 for the job');
        const s2 = (await restored.getShadow('rs-2', ''))!;
        const software = { ...(s2.state.desired!.software as Record<string, unknown>), jobId: `${jobId}.cancel` };
        const moved = { ...s2, version: s2.version + 1, state: { ...s2.state, desired: { ...s2.state.desired, software } }, timestamp: s2.timestamp + 1 };
        assert.equal(await restored.putShadow(moved, s2.version), true);
      } finally {
        await restored.stop();
      }
      await relay.up();
    });

    after(async () => {
      await agent?.stop().catch(() => undefined);
      await raw?.client.endAsync().catch(() => undefined);
      await ts?.close();
      await relay?.stop();
      await server.stop();
      if (dir) await rm(dir, { recursive: true, force: true });
    });

    it('a device whose SUCCESS the restore lost is asked again and re-reports it: the execution ends SUCCEEDED, without a reconnect', async () => {
      const ended = await eventually(
        async () => {
          try {
            const e = await execution('rs-1');
            return e?.status === 'SUCCEEDED' ? e : undefined;
          } catch {
            return undefined; // the store's first reads after the outage
          }
        },
        60_000,
        "rs-1's execution, open again in the restored database, ends",
      );
      assert.equal(ended.details.agentStatus, 'SUCCESS');
      assert.deepEqual(connections, [], 'the device stayed connected: nothing but the re-sent command asked it');
      assert.equal(finished.filter((e) => e.jobId === jobId).length, 1, 'the job was not run twice');
      const start = lines.slice(restoreMark).filter((l) => l.level === 'info' && l.msg.startsWith('store disruption: re-sending the update commands of open executions (the database'));
      assert.ok(start.length >= 1, 'the pass says it starts');
    });

    it("a shadow that no longer asks for the execution's command is sent nothing", async () => {
      const end = await eventually(async () => lines.slice(restoreMark).find((l) => l.level === 'info' && l.msg === 'store disruption: update commands of open executions re-sent'), 60_000, "the pass's end line");
      assert.deepEqual([end.jobs, end.executions, end.resent, end.moved, end.offline, end.failed], [1, 2, 1, 1, 0, 0], 'rs-1 asked again, rs-2 not');
      // the server answers rs-2's get after anything it published to rs-2 before
      await raw!.client.publishAsync(requestTopic({ deviceId: 'rs-2', name: '' }, 'get'), JSON.stringify({ clientToken: 'barrier' }), { qos: 1 });
      await eventually(async () => raw!.log.slice(rawMark).find((m) => m.topic.endsWith('/get/accepted') && m.body?.clientToken === 'barrier'), 20_000, "rs-2's get answered");
      const deltas = raw!.log.slice(rawMark).filter((m) => m.topic.endsWith('/update/delta'));
      assert.deepEqual(deltas, [], 'no delta re-sent to rs-2');
      assert.equal((await execution('rs-2'))?.status, 'QUEUED', "rs-2's execution left as the restored database holds it");
    });
  });
}
