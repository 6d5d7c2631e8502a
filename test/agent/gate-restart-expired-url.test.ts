/**
 * A restart while the install gate waits, the download URL (and the command's manifest)
 * expired meanwhile: the agent has the whole, verified build, so it checks the file and the
 * command again and goes back to the gate, without asking the server for a fresh URL (docs/
 * agent.md, the install gate), once the server's document says the job is still wanted. It
 * asked for one first, although it needed no download. A file
 * changed while the agent was stopped is still not installed. A real server (URLs of 10 s),
 * broker and agents.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, open, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import { UpdateAgent } from '../../src/agent/agent.ts';
import { MemoryAgentStateStore } from '../../src/agent/agent-state.ts';
import { SlotInstaller } from '../../src/agent/slot-installer.ts';
import type { UpdateAgentOptions } from '../../src/agent/agent-options.ts';
import type { GateAnswer } from '../../src/agent/update-job.ts';
import { createLogger } from '../../src/util/logger.ts';
import { eventually } from '../helpers/cli.ts';
import { startRelay, type TcpRelay } from '../helpers/tcp-relay.ts';
import { registerDevice, startTestServer, type TestServer } from '../helpers/server.ts';
import { addArtifact, deploy, outcome, startAgent, testAgentOptions } from '../security/support.ts';

const build = randomBytes(50_000);

describe('UpdateAgent: a restart during the install gate with an expired URL', () => {
  let ts: TestServer;
  let root: string;
  const agents: UpdateAgent[] = [];
  const relays: TcpRelay[] = [];

  before(async () => {
    ts = await startTestServer({ flags: { 'url-ttl': 10 } });
    root = await mkdtemp(path.join(os.tmpdir(), 'updraft-gate-restart-'));
    await addArtifact(ts, '2.0.0', build);
  });
  after(async () => {
    await Promise.all(agents.map((a) => a.stop()));
    await Promise.all(relays.map((r) => r.stop()));
    await ts.close();
    await rm(root, { recursive: true, force: true });
  });

  /**
   * An agent whose gate says "not now", stopped once the wait is saved, and the time until the
   * URL it holds (and the command's manifest, of the same lifetime) has expired waited out.
   */
  async function stoppedInTheWait(deviceId: string, extra: Partial<UpdateAgentOptions> = {}) {
    const lines: string[] = [];
    const base: Partial<UpdateAgentOptions> = {
      username: deviceId,
      password: await registerDevice(ts, deviceId),
      logger: createLogger({ level: 'info', format: 'json', write: (l) => lines.push(l) }),
      installGateRetryMs: 60_000,
      ...extra,
    };
    const first = await startAgent(ts, root, deviceId, { ...base, installGate: async (): Promise<GateAnswer> => ({ later: 'machine at work' }) });
    agents.push(first.agent);
    const waiting = new Promise<void>((resolve) => first.agent.on('status', (e) => e.waiting && resolve()));
    const jobId = await deploy(ts, [deviceId], 'fw@2.0.0');
    await waiting;
    await first.agent.stop();
    const part = path.join(first.installDir, '.updraft', 'downloads', `${jobId}.part`);
    assert.equal((await stat(part)).size, build.length, 'the whole build on the device');
    // the server's URLs (and manifests) live 10 s: expired by the restart
    await sleep(11_500);
    const logged = lines.length;
    return { jobId, base, part, installDir: first.installDir, after: () => lines.slice(logged).map((l) => JSON.parse(l) as { msg: string }) };
  }

  /** Asks of a gate that says "go", and the gate. */
  const going = () => {
    const asked: string[] = [];
    return { asked, installGate: async (sw: { version: string }): Promise<GateAnswer> => (asked.push(sw.version), { go: true }) };
  };

  it('goes back to the gate with the file it has, asking for no fresh URL; it installs once the server says the job is still wanted', async () => {
    // a state store that loses no save (a library's): the job is resumed at the start, before any connection
    const store = new MemoryAgentStateStore();
    const s = await stoppedInTheWait('gr-1', { stateStore: store });
    const gate = going();
    const installer = new SlotInstaller({ dir: s.installDir, initialVersion: '1.0.0', initialName: 'fw' });
    // the server cannot be reached at first: the relay to its broker is down
    const relay = await startRelay({ host: '127.0.0.1', port: ts.server.broker.port });
    relays.push(relay);
    await relay.down();
    const agent = new UpdateAgent({
      ...testAgentOptions(ts, 'gr-1', s.installDir, installer),
      ...s.base,
      brokerUrl: `mqtt://127.0.0.1:${relay.port}`,
      installGate: gate.installGate,
    });
    agents.push(agent);
    const ended = new Promise<{ status: string; error?: string }>((resolve) => agent.on('status', (e) => (e.status === 'SUCCESS' || e.status === 'FAILURE') && resolve(e)));
    await agent.start();
      // the file kept and checked without the server; the install waits for the server's word
      // (a job canceled while the agent was stopped is not installed: canceled-job-late-command.test.ts)
    await eventually(async () => (s.after().some((l) => l.msg === 'resumed job: waiting for the server to confirm it is still wanted before installing') ? true : undefined), 15_000, 'the resumed job waits for the server');
    assert.ok(s.after().some((l) => l.msg === 'the downloaded build is on the device, whole: checked again, kept'));
    assert.equal((await installer.current())?.version, '1.0.0');
    assert.deepEqual(gate.asked, []);
    await relay.up();
    const end = await ended;
    assert.equal(end.status, 'SUCCESS', JSON.stringify(end));
    assert.deepEqual(gate.asked, ['2.0.0'], 'the gate asked again after the restart');
    assert.equal((await installer.current())?.version, '2.0.0');
    const msgs = s.after().map((l) => l.msg);
    assert.ok(!msgs.includes('download URL expired, asking for a fresh one'), 'no fresh URL asked for: the build was on the device, whole');
    assert.ok(msgs.includes('the downloaded build is on the device, whole: checked again, kept'), msgs.join(' | '));
  });

  it('a file changed while the agent was stopped is not installed: fetched again, verified', async () => {
    const s = await stoppedInTheWait('gr-2');
    const fh = await open(s.part, 'r+');
    await fh.write(Buffer.from('not the build'), 0, 13, 0);
    await fh.close();
    const gate = going();
    const again = await startAgent(ts, root, 'gr-2', { ...s.base, installGate: gate.installGate });
    agents.push(again.agent);
    const done = await outcome(again.finished, s.jobId);
    assert.equal(done.status, 'SUCCESS', JSON.stringify(done));
    const msgs = s.after().map((l) => l.msg);
    assert.ok(msgs.includes('resumed download failed verification, downloading again from the start'), msgs.join(' | '));
    assert.ok(msgs.includes('the build on the device is not the one verified before: downloading it again'), msgs.join(' | '));
    assert.ok(!msgs.includes('the downloaded build is on the device, whole: checked again, kept'));
    assert.deepEqual(gate.asked, ['2.0.0']);
  });
});
