/**
 * A PostgreSQL database restored as docs/deployment.md advises: every instance stopped while
 * pg_restore runs, then started again. A device's SUCCESS, recorded after the snapshot, is
 * lost: the restored database holds its execution IN_PROGRESS, its shadow still asking for the
 * job. No instance saw a connection lost while running (no store disruption), so
 * DisruptionResync's pass never ran, and behind an external broker, where the device kept its
 * connection all along, nothing asked it again: its execution stayed open for good (QA of
 * 2026-12-06, 2 of 2 runs). The instance that comes to lead rollouts now runs the same pass.
 * With the embedded broker no such pass runs: every device reconnects to the started instance
 * and asks with get, and its answer ends the execution.
 *
 * Real parts: a private PostgreSQL (pg_dump, pg_restore --clean while no instance runs); two
 * in-process servers on it behind a private Mosquitto (--mqtt-url), or one on its embedded
 * broker; a real agent (A/B slots) as the device.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cp, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { mosquittoPasswd } from '../../src/broker/mosquitto-config.ts';
import { diagnose } from '../../src/cli/doctor-command.ts';
import { LEAD_TAKEN } from '../../src/jobs/disruption-resync.ts';
import { PostgresStore } from '../../src/store/postgres-store.ts';
import { createLogger } from '../../src/util/logger.ts';
import type { UpdateAgent } from '../../src/agent/agent.ts';
import type { JobFinishedEvent } from '../../src/agent/agent-events.ts';
import { eventually } from '../helpers/cli.ts';
import { freePort } from '../helpers/free-port.ts';
import { findMosquitto, mosquittoUnavailable, startTestMosquitto, type TestMosquitto } from '../helpers/mosquitto.ts';
import { postgresTool, startTestPostgres, unavailable } from '../helpers/postgres.ts';
import { registerDevice, startTestServer, type TestServer } from '../helpers/server.ts';
import { addArtifact, deploy, startAgent } from '../security/support.ts';

type Line = { level: string; msg: string; [field: string]: unknown };

const TOKEN = `updr_restore_lead_test_${'x'.repeat(24)}`;
const START = 'lead taken: re-sending the update commands of open executions (as at every lead taken, in case the database went back or the last leader stopped mid-send)';
const END = 'lead taken: update commands of open executions re-sent';
const mosquitto = findMosquitto();
const pgResult = await startTestPostgres();

const run = (tool: string, args: string[]) => {
  const r = spawnSync(postgresTool(tool), args, { encoding: 'utf8' });
  assert.equal(r.status, 0, `${tool} ${args.join(' ')}: ${r.stderr}`);
};

if (!pgResult.ok) {
  const message = unavailable(pgResult, 'PostgreSQL restore with the instances stopped');
  it('a database restored while no instance ran', (t) => t.skip(message));
} else {
  const pg = pgResult.server;

  describe('PostgreSQL restored while no instance ran: the instance that takes the lead asks again', { timeout: 240_000 }, () => {
    after(() => pg.stop());

    /** One instance per data dir in `dataDirs` on `flags`' database, the n-th logging into `lines[first + n]`. */
    const startInstances = async (dataDirs: string[], flags: Record<string, unknown>, lines: Line[][], first = 0) => {
      const servers: TestServer[] = [];
      for (const [n, dataDir] of dataDirs.entries()) {
        const into = (lines[first + n] ??= []);
        servers.push(await startTestServer({ dataDir, flags, logger: createLogger({ level: 'info', format: 'json', write: (l) => into.push(JSON.parse(l) as Line) }) }));
      }
      return servers;
    };

    /**
     * The QA's steps: a job to `deviceId` (a real agent, its install held at its gate), a
     * pg_dump while it installs, its SUCCESS recorded and the job done, every instance stopped,
     * pg_restore --clean, the restored execution checked IN_PROGRESS. Resolves with the job.
     */
    const restoreLosingSuccess = async (o: { servers: TestServer[]; db: string; dir: string; agent: UpdateAgent; gate: { gated: boolean; release: () => void }; finished: JobFinishedEvent[] }) => {
      const lead = o.servers[0]!;
      const execution = async () => (await lead.server.store.getExecutions([{ jobId, deviceId: 'lr-1' }]))[0];
      const jobId = await deploy(lead, ['lr-1'], 'fw@2.0.0');
      await eventually(async () => (o.gate.gated && (await execution())?.status === 'IN_PROGRESS' ? true : undefined), 30_000, 'lr-1 downloaded, waiting at its install gate');
      await lead.server.tracker.idle();
      run('pg_dump', ['-Fc', '-f', path.join(o.dir, 'snapshot.dump'), o.db]);
      o.gate.release();
      await eventually(async () => ((await lead.server.store.getJob(jobId))?.status === 'COMPLETED' ? true : undefined), 30_000, 'the job done before the restore');
      assert.equal(o.finished.filter((e) => e.jobId === jobId).length, 1, 'lr-1 finished the job once');
      // the instances stopped (the follower first: the leader's lease is not taken over meanwhile)
      for (const s of [...o.servers].reverse()) await s.stop();
      run('pg_restore', ['--clean', '-d', o.db, path.join(o.dir, 'snapshot.dump')]);
      const restored = new PostgresStore({ url: o.db });
      await restored.start();
      try {
        const [e] = await restored.getExecutions([{ jobId, deviceId: 'lr-1' }]);
        assert.equal(e?.status, 'IN_PROGRESS', 'the restored database lost lr-1 SUCCESS');
        assert.equal(((await restored.getShadow('lr-1', ''))?.state.desired?.software as { jobId?: string } | undefined)?.jobId, jobId, 'the restored shadow asks lr-1 for the job');
      } finally {
        await restored.stop();
      }
      return jobId;
    };

    /** A held install gate. */
    const installGate = () => {
      let release!: () => void;
      const released = new Promise<void>((r) => (release = r));
      const gate = {
        gated: false,
        release: () => release(),
        installGate: async () => {
          gate.gated = true;
          await released;
          return { go: true as const };
        },
      };
      return gate;
    };

    it('behind an external broker: the device, connected all along, is asked again by the instance that takes the lead, and its execution ends SUCCEEDED', async (t) => {
      if (!mosquitto.ok) return t.skip(mosquittoUnavailable(mosquitto.reason, 'the external broker case'));
      const root = await mkdtemp(path.join(os.tmpdir(), 'updraft-restore-lead-'));
      const broker: TestMosquitto = await startTestMosquitto(mosquitto.bin, { operatorToken: TOKEN, devices: [], secrets: new Map() });
      let servers: TestServer[] = [];
      let agent: UpdateAgent | undefined;
      try {
        const db = await pg.createDatabase();
        const dataDirs = [path.join(root, 'a'), path.join(root, 'b')];
        await mkdir(dataDirs[0]!, { recursive: true });
        await writeFile(path.join(dataDirs[0]!, 'operator-token'), TOKEN + '\n', { mode: 0o600 });
        const flags = { db, 'mqtt-url': broker.serviceUrl, 'mqtt-tls-port': -1 };
        const lines: Line[][] = [];
        servers = await startInstances(dataDirs.slice(0, 1), flags, lines);
        await eventually(async () => (servers[0]!.server.rollouts.engine.isLeader ? true : undefined), 15_000, 'A leads');
        // every instance shares the identity material (docs/deployment.md): B's data dir a copy of A's
        await cp(dataDirs[0]!, dataDirs[1]!, { recursive: true });
        servers.push(...(await startInstances(dataDirs.slice(1), flags, lines, 1)));
        assert.equal(servers[1]!.server.rollouts.engine.isLeader, false, 'B follows');
        const [a] = servers as [TestServer, TestServer];
        await addArtifact(a, '2.0.0', Buffer.from('fw 2.0.0 '.repeat(3000)));
        // the device admitted by Mosquitto's password file, as mosquitto-config writes it
        const secret = await registerDevice(a, 'lr-1');
        await writeFile(path.join(broker.dir, 'passwd'), mosquittoPasswd({ operatorToken: TOKEN, devices: [{ deviceId: 'lr-1', revoked: false }], secrets: new Map([['lr-1', secret]]) }).text);
        await broker.reload();
        const gate = installGate();
        const started = await startAgent(a, path.join(root, 'agents'), 'lr-1', { username: 'lr-1', password: secret, brokerUrl: broker.deviceUrl, installGate: gate.installGate });
        agent = started.agent;
        const connections: boolean[] = [];
        agent.on('connection', (e) => connections.push(e.online));
        const jobId = await restoreLosingSuccess({ servers, db, dir: root, agent, gate, finished: started.finished });

        const mark = lines.map((l) => l.length);
        servers = await startInstances(dataDirs, flags, lines);
        const a2 = servers[0]!;
        const ended = await eventually(
          async () => {
            const [e] = await a2.server.store.getExecutions([{ jobId, deviceId: 'lr-1' }]);
            return e?.status === 'SUCCEEDED' ? e : undefined;
          },
          60_000,
          "lr-1's execution, open again in the restored database, ends",
        );
        assert.equal(ended.details.agentStatus, 'SUCCESS');
        assert.deepEqual(connections, [], 'the device stayed connected to Mosquitto: nothing but the re-sent command asked it');
        assert.equal(started.finished.filter((e) => e.jobId === jobId).length, 1, 'the job was not run twice');
        assert.equal(a2.server.rollouts.engine.isLeader, true, 'A, started first, leads');
        const after = lines.map((l, n) => l.slice(mark[n]));
        const begun = after[0]!.filter((l) => l.level === 'info' && l.msg === START);
        assert.deepEqual(
          begun.map((l) => l.reason),
          [LEAD_TAKEN],
          'the leader says the pass, with why',
        );
        const end = await eventually(async () => lines[0]!.slice(mark[0]).find((l) => l.level === 'info' && l.msg === END), 30_000, "the pass's end line");
        assert.deepEqual([end.jobs, end.executions, end.resent, end.moved, end.offline, end.failed], [1, 1, 1, 0, 0, 0], 'lr-1 asked again');
        assert.deepEqual(
          after[1]!.filter((l) => l.msg.startsWith('store disruption') || l.msg.startsWith('lead taken')).map((l) => l.msg),
          [],
          'the follower runs no pass',
        );

        // which instance leads, said by each: GET /api/v1/metrics (JSON and Prometheus) and doctor
        for (const [n, leads] of [[0, true], [1, false]] as const) {
          const s = servers[n]!;
          const json = (await (await fetch(`${s.httpUrl}/api/v1/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } })).json()) as { rollouts?: { leader: boolean } };
          assert.deepEqual(json.rollouts, { leader: leads }, `instance ${n}: rollouts.leader`);
          const text = await (await fetch(`${s.httpUrl}/api/v1/metrics`, { headers: { authorization: `Bearer ${TOKEN}`, accept: 'text/plain' } })).text();
          assert.match(text, new RegExp(`^updraft_rollouts_leader ${leads ? 1 : 0}$`, 'm'), `instance ${n}: the gauge`);
          const said = (await diagnose({ server: s.httpUrl, token: TOKEN, retryForMs: 0 })).filter((f) => f.check === 'leader');
          assert.deepEqual(said.map((f) => [f.verdict, f.text.startsWith(leads ? 'this instance leads rollouts' : 'this instance follows: another instance')]), [['ok', true]], `instance ${n}: doctor's line`);
        }
      } finally {
        await agent?.stop().catch(() => undefined);
        for (const s of servers.reverse()) await s.stop().catch(() => undefined);
        await broker.stop();
        await rm(root, { recursive: true, force: true });
      }
    });

    it('with the embedded broker: no pass on the lead taken; the device reconnects, asks with get, and its execution ends SUCCEEDED', async () => {
      const root = await mkdtemp(path.join(os.tmpdir(), 'updraft-restore-lead-embedded-'));
      let servers: TestServer[] = [];
      let agent: UpdateAgent | undefined;
      try {
        const db = await pg.createDatabase();
        const dataDir = path.join(root, 'a');
        // a fixed MQTT port: the agent reconnects to the instance started again
        const flags = { db, 'mqtt-port': await freePort() };
        const lines: Line[][] = [];
        servers = await startInstances([dataDir], flags, lines);
        const a = servers[0]!;
        await addArtifact(a, '2.0.0', Buffer.from('fw 2.0.0 '.repeat(3000)));
        const gate = installGate();
        const started = await startAgent(a, path.join(root, 'agents'), 'lr-1', { installGate: gate.installGate });
        agent = started.agent;
        const jobId = await restoreLosingSuccess({ servers, db, dir: root, agent, gate, finished: started.finished });

        const mark = lines[0]!.length;
        servers = await startInstances([dataDir], flags, lines);
        const a2 = servers[0]!;
        await eventually(
          async () => {
            const [e] = await a2.server.store.getExecutions([{ jobId, deviceId: 'lr-1' }]);
            return e?.status === 'SUCCEEDED' ? e : undefined;
          },
          60_000,
          "lr-1's execution ends on its get's answer",
        );
        assert.equal(started.finished.filter((e) => e.jobId === jobId).length, 1, 'the job was not run twice');
        // a pass would begin 5 s after the lead (its settle): wait past that before saying none ran
        await new Promise((r) => setTimeout(r, 6_000));
        assert.deepEqual(
          lines[0]!.slice(mark).filter((l) => l.msg.startsWith('store disruption') || l.msg.startsWith('lead taken')).map((l) => l.msg),
          [],
          'no re-send pass with the embedded broker',
        );
      } finally {
        await agent?.stop().catch(() => undefined);
        for (const s of servers.reverse()) await s.stop().catch(() => undefined);
        await rm(root, { recursive: true, force: true });
      }
    });
  });
}
