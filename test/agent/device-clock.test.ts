/**
 * Devices with wrong clocks (agent/clock-offset.ts), on a real server, broker and agent: a
 * clock ahead by more than a command's lifetime fails the update with the clock named, a
 * clock behind still installs, and each offset is reported where the fleet can be asked
 * for it.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { UpdateAgent } from '../../src/agent/agent.ts';
import { FileAgentStateStore, type AgentStateData } from '../../src/agent/agent-state.ts';
import { ClockOffset, describeSeconds } from '../../src/agent/clock-offset.ts';
import { eventually, runCli } from '../helpers/cli.ts';
import { registerDevice, startTestServer, type TestServer } from '../helpers/server.ts';
import { addArtifact, deploy, outcome, startAgent } from '../security/support.ts';

const HOURS_2 = 2 * 3_600_000;

/** The agent's file store on a storage that takes a second to begin each write. */
class SlowFileStore extends FileAgentStateStore {
  override async save(state: AgentStateData): Promise<void> {
    const copy = { ...state };
    await new Promise((r) => setTimeout(r, 1000));
    return super.save(copy);
  }
}

describe('the clock offset estimate', () => {
  it('reads the server time from an answer, ignores slow or unstamped ones, and names a wrong clock', () => {
    const c = new ClockOffset();
    const t = 1_800_000_000_000; // device ms
    assert.equal(c.observe(t, t + 200, undefined), undefined);
    assert.equal(c.observe(t, t + 9_000, 1_800_000_000), undefined, 'a 9 s round trip says too little');
    assert.equal(c.hint(), '', 'unknown: no hint');
    // sent at device 1,800,000,000.0 s, answered 0.2 s later, stamped 7,200 s earlier by the server
    assert.equal(c.observe(t, t + 200, 1_800_000_000 - 7200), 7200);
    assert.equal(c.serverTime(t), t - 7_200_000);
    assert.match(c.hint(), /which is 2 h 0 min ahead of the server's: set the device's clock/);
    assert.equal(c.observe(t, t + 200, 1_800_000_000 + 30), -30);
    assert.equal(c.hint(), '', 'half a minute: not a wrong clock');
    assert.equal(describeSeconds(75), '1 min 15 s');
    assert.equal(describeSeconds(7260), '2 h 1 min');
  });
});

describe('devices with wrong clocks', () => {
  let ts: TestServer;
  let root: string;
  const agents: UpdateAgent[] = [];
  before(async () => {
    root = await mkdtemp(path.join(os.tmpdir(), 'updraft-clock-'));
    ts = await startTestServer();
    await addArtifact(ts, '2.0.0', randomBytes(20_000));
  });
  after(async () => {
    await Promise.all(agents.map((a) => a.stop()));
    await ts.close();
    await rm(root, { recursive: true, force: true });
  });
  const offsetOf = (id: string, want: (n: number) => boolean) =>
    eventually(async () => {
      const v = (await ts.server.store.getShadow(id, ''))?.state.reported?.agent as { clockOffsetSeconds?: unknown } | undefined;
      return typeof v?.clockOffsetSeconds === 'number' && want(v.clockOffsetSeconds) ? v.clockOffsetSeconds : undefined;
    }, 15_000, `${id}'s clock offset reported`);

  it('a clock 2 h ahead: the update fails naming the clock (not an endless "URL expired"), and the offset is reported', async () => {
    const { agent, finished } = await startAgent(ts, root, 'clock-ahead', { now: () => Date.now() + HOURS_2 });
    agents.push(agent);
    const offset = await offsetOf('clock-ahead', (n) => n > 0);
    assert.ok(Math.abs(offset - 7200) <= 2, `offset ${offset}`);
    const jobId = await deploy(ts, ['clock-ahead'], 'fw@2.0.0');
    const ev = await outcome(finished, jobId);
    assert.equal(ev.status, 'FAILURE');
    assert.match(ev.error ?? '', /^refused: manifest expired at \S+ by this device's clock, which is 2 h 0 min ahead of the server's: set the device's clock/);
    const listed = await runCli(['device', 'list', '--query', 'reported.agent.clockOffsetSeconds > 59', '--server', ts.httpUrl, '--token', ts.token]);
    assert.equal(listed.code, 0, listed.stderr);
    assert.deepEqual(listed.stdout.trim().split('\n').map((l) => l.split(/\s+/)[0]), ['clock-ahead']);
  });

  it('a clock 2 h behind still installs; once mended, the offset it reported is replaced', async () => {
    let skew = -HOURS_2;
    const { agent, finished } = await startAgent(ts, root, 'clock-behind', { now: () => Date.now() + skew });
    const offset = await offsetOf('clock-behind', (n) => n < 0);
    assert.ok(Math.abs(offset + 7200) <= 2, `offset ${offset}`);
    const jobId = await deploy(ts, ['clock-behind'], 'fw@2.0.0');
    assert.equal((await outcome(finished, jobId)).status, 'SUCCESS');
    // NTP sets the clock; the agent's next connection learns it and says so
    skew = 0;
    await agent.stop();
    await agent.start();
    agents.push(agent);
    assert.ok(Math.abs(await offsetOf('clock-behind', (n) => Math.abs(n) < 59)) <= 2);
  });

  it('a device whose agent state was wiped, its clock mended meanwhile, replaces the offset its shadow still holds', async () => {
    const password = await registerDevice(ts, 'clock-wiped');
    // a storage slow to write: the agent saves the offset it reported after the server's
    // answer, and its stop waits for that save (nothing lands after the stop)
    const file = path.join(root, 'clock-wiped', '.updraft', 'agent-state.json');
    const first = await startAgent(ts, root, 'clock-wiped', { username: 'clock-wiped', password, now: () => Date.now() + HOURS_2, stateStore: new SlowFileStore(file) });
    assert.ok(Math.abs((await offsetOf('clock-wiped', (n) => n > 0)) - 7200) <= 2);
    await first.agent.stop();
    const saved = JSON.parse(await readFile(file, 'utf8')) as { clockOffsetReported?: number };
    assert.ok(Math.abs((saved.clockOffsetReported ?? 0) - 7200) <= 2, `saved before the stop returned: ${JSON.stringify(saved)}`);
    // re-flashed: the agent's state is gone, the shadow still says 2 h ahead
    await rm(file);
    const again = await startAgent(ts, root, 'clock-wiped', { username: 'clock-wiped', password });
    agents.push(again.agent);
    assert.ok(Math.abs(await offsetOf('clock-wiped', (n) => Math.abs(n) < 59)) <= 2);
  });
});
