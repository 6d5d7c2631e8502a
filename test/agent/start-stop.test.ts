/**
 * The agent as a library: start() and stop() in any order, while the other is under way. QA:
 * a stop() during a slow start resolved before the start was over, and a start() right after
 * it connected twice under the same client id (the start that was stopped as well), the two
 * connections pushing each other off the broker for good; a start() after a failed one
 * resolved with nothing running. Real server, real agents, real MQTT.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import { UpdateAgent } from '../../src/agent/agent.ts';
import type { UpdateAgentOptions } from '../../src/agent/agent-options.ts';
import type { InstallContext, Installer, InstalledSoftware, RecoveryResult } from '../../src/agent/installer.ts';
import { SlotInstaller } from '../../src/agent/slot-installer.ts';
import type { DesiredSoftware } from '../../src/protocol/software.ts';
import { eventually } from '../helpers/cli.ts';
import { registerDevice, startTestServer, type TestServer } from '../helpers/server.ts';
import { addArtifact, deploy, outcome, startAgent, testAgentOptions } from '../security/support.ts';

/** The slot installer, with a `current()` that takes `delayMs` (a slow disk, a slow custom installer). */
class SlowCurrent implements Installer {
  /** Calls of current() so far. */
  calls = 0;
  private called: () => void = () => {};
  /** Resolves at the first call of current(). */
  readonly entered = new Promise<void>((resolve) => (this.called = resolve));
  constructor(
    private readonly inner: SlotInstaller,
    private readonly delayMs: number,
  ) {}
  async current(): Promise<InstalledSoftware | undefined> {
    this.calls++;
    this.called();
    await sleep(this.delayMs);
    return this.inner.current();
  }
  install(file: string, sw: DesiredSoftware, ctx: InstallContext): Promise<void> {
    return this.inner.install(file, sw, ctx);
  }
  recover(sw: DesiredSoftware, ctx: InstallContext): Promise<RecoveryResult> {
    return this.inner.recover(sw, ctx);
  }
}

/** The slot installer, with a first `current()` that never ends until `release()` (a hung mount, a custom installer stuck). */
class HungFirstCurrent implements Installer {
  private called: () => void = () => {};
  /** Resolves at the first call of current(). */
  readonly entered = new Promise<void>((resolve) => (this.called = resolve));
  private hung = true;
  private unblock: () => void = () => {};
  private readonly blocked = new Promise<void>((resolve) => (this.unblock = resolve));
  constructor(private readonly inner: SlotInstaller) {}
  async current(): Promise<InstalledSoftware | undefined> {
    if (this.hung) {
      this.hung = false;
      this.called();
      await this.blocked;
    }
    return this.inner.current();
  }
  /** Lets the first current() answer at last. */
  release(): void {
    this.unblock();
  }
  install(file: string, sw: DesiredSoftware, ctx: InstallContext): Promise<void> {
    return this.inner.install(file, sw, ctx);
  }
  recover(sw: DesiredSoftware, ctx: InstallContext): Promise<RecoveryResult> {
    return this.inner.recover(sw, ctx);
  }
}

describe('UpdateAgent start() and stop()', () => {
  let ts: TestServer;
  let root: string;
  const agents: UpdateAgent[] = [];

  before(async () => {
    ts = await startTestServer();
    root = await mkdtemp(path.join(os.tmpdir(), 'updraft-start-stop-'));
    await addArtifact(ts, '2.0.0', Buffer.from('fw 2.0.0 '.repeat(1000)));
  });
  after(async () => {
    await Promise.all(agents.map((a) => a.stop()));
    await ts.close();
    await rm(root, { recursive: true, force: true });
  });

  const agentOf = (deviceId: string, password: string, installer: Installer, extra: Partial<UpdateAgentOptions> = {}) => {
    const agent = new UpdateAgent({ ...testAgentOptions(ts, deviceId, path.join(root, deviceId), installer), username: deviceId, password, ...extra });
    agents.push(agent);
    return agent;
  };
  const slowSlots = (deviceId: string) => new SlowCurrent(new SlotInstaller({ dir: path.join(root, deviceId), initialVersion: '1.0.0', initialName: 'fw' }), 300);
  /** The server's view: is the device online (its broker's presence)? */
  const online = async (deviceId: string) => {
    const res = await fetch(`${ts.httpUrl}/api/v1/devices/${deviceId}`, { headers: { authorization: `Bearer ${ts.token}` } });
    assert.equal(res.status, 200);
    return ((await res.json()) as { online: boolean }).online;
  };
  /** Every connection change of `agent`, in order. */
  const connections = (agent: UpdateAgent) => {
    const seen: boolean[] = [];
    agent.on('connection', (e) => seen.push(e.online));
    return seen;
  };

  it('stop() during a slow current(): the start ends without connecting before stop() resolves; another agent for the device then connects and stays', async () => {
    const deviceId = 'ss-1';
    const password = await registerDevice(ts, deviceId);
    const installer = slowSlots(deviceId);
    const a = agentOf(deviceId, password, installer);
    const aConnections = connections(a);
    let startSettled = false;
    const started = a.start().finally(() => (startSettled = true));
    await installer.entered;
    await a.stop();
    assert.equal(startSettled, true, 'stop() resolved while start() was still loading: it resolves once everything is closed');
    await started;
    assert.equal(a.connected, false);
    assert.deepEqual(aConnections, [], 'the stopped start never connected');
    assert.equal(ts.server.broker.addressOf(deviceId), undefined, 'the broker holds no connection of the device');
    assert.equal(await online(deviceId), false);
    // a second stop is fine, and at once
    await a.stop();

    // a new agent for the same device (same process, same directory) connects, and nothing pushes it off
    const b = await startAgent(ts, root, deviceId, { username: deviceId, password });
    agents.push(b.agent);
    const bConnections = connections(b.agent);
    const jobId = await deploy(ts, [deviceId], 'fw@2.0.0');
    assert.equal((await outcome(b.finished, jobId)).status, 'SUCCESS');
    assert.deepEqual(bConnections, [], 'b never lost its connection');
    assert.deepEqual(aConnections, [], 'a never connected');
    assert.equal(ts.server.broker.connectedClients, 1);
    await b.agent.stop();
    await eventually(async () => ((await online(deviceId)) ? undefined : true), 10_000, 'the device offline');
    assert.equal(ts.server.broker.addressOf(deviceId), undefined);
  });

  it('start() right after a stop() that came during start(): one connection, and stop() closes it', async () => {
    const deviceId = 'ss-2';
    const password = await registerDevice(ts, deviceId);
    const installer = slowSlots(deviceId);
    const a = agentOf(deviceId, password, installer);
    const finished: string[] = [];
    a.on('job-finished', (e) => finished.push(`${e.jobId} ${e.status}`));
    const seen = connections(a);
    const first = a.start();
    assert.equal(a.start(), first, 'a start() during a start gives that start');
    await installer.entered;
    const stopped = a.stop();
    const again = a.start();
    assert.notEqual(again, first, 'the stopped start is not the new one');
    await Promise.all([first, stopped, again]);
    await eventually(async () => (a.connected ? true : undefined), 10_000, 'connected');
    // the two starts read what runs; only the second went on to connect
    assert.equal(installer.calls, 2);

    const jobId = await deploy(ts, [deviceId], 'fw@2.0.0');
    await eventually(async () => finished.find((f) => f.startsWith(jobId)), 30_000, `job ${jobId} finished`);
    assert.deepEqual(finished, [`${jobId} SUCCESS`]);
    assert.deepEqual(seen, [true], 'one connection, never pushed off by another under the same client id');
    assert.equal(ts.server.broker.connectedClients, 1);

    await Promise.all([a.stop(), a.stop()]);
    assert.equal(a.connected, false);
    await eventually(async () => ((await online(deviceId)) ? undefined : true), 10_000, 'the device offline');
    // nothing comes back (the agent reconnects within 200 to 500 ms: a client left behind would)
    await sleep(1000);
    assert.equal(ts.server.broker.addressOf(deviceId), undefined, 'no connection of the device came back');
    assert.equal(ts.server.broker.connectedClients, 0);
    assert.deepEqual(seen, [true, false]);
  });

  it('stop() during a current() that never ends resolves: the start ends without connecting, a later start() connects, and the stuck start, ending late, changes nothing', async () => {
    const deviceId = 'ss-4';
    const password = await registerDevice(ts, deviceId);
    const installer = new HungFirstCurrent(new SlotInstaller({ dir: path.join(root, deviceId), initialVersion: '1.0.0', initialName: 'fw' }));
    const a = agentOf(deviceId, password, installer);
    const seen = connections(a);
    let startSettled = false;
    const first = a.start().finally(() => (startSettled = true));
    await installer.entered;
    // before the fix this never resolved (it waited for current()): the runner's timeout says so
    await a.stop();
    assert.equal(startSettled, true, 'the stopped start() resolved by the time stop() did');
    await first;
    assert.equal(a.connected, false);
    assert.deepEqual(seen, [], 'the stopped start never connected');
    assert.equal(ts.server.broker.addressOf(deviceId), undefined, 'the broker holds no connection of the device');
    assert.equal(await online(deviceId), false);

    // the first current() is still hung: a new start() works all the same
    await a.start();
    await eventually(async () => (a.connected ? true : undefined), 10_000, 'connected');
    // the stuck start ends now: it must neither connect nor touch the running agent
    installer.release();
    const finished: string[] = [];
    a.on('job-finished', (e) => finished.push(`${e.jobId} ${e.status}`));
    const jobId = await deploy(ts, [deviceId], 'fw@2.0.0');
    await eventually(async () => finished.find((f) => f.startsWith(jobId)), 30_000, `job ${jobId} finished`);
    assert.deepEqual(finished, [`${jobId} SUCCESS`]);
    assert.deepEqual(seen, [true], 'one connection, never pushed off by another under the same client id');
    assert.equal(ts.server.broker.connectedClients, 1);
    await a.stop();
    await eventually(async () => ((await online(deviceId)) ? undefined : true), 10_000, 'the device offline');
    assert.equal(ts.server.broker.addressOf(deviceId), undefined);
  });

  it('a start() that fails fails again when called again; concurrent calls share the failure', async () => {
    const deviceId = 'ss-3';
    const password = await registerDevice(ts, deviceId);
    // a client certificate on tcp:// (not mqtts://): mqtt.js refuses the URL when the agent connects
    const a = agentOf(deviceId, password, new SlotInstaller({ dir: path.join(root, deviceId), initialVersion: '1.0.0', initialName: 'fw' }), {
      brokerUrl: ts.mqttUrl.replace('mqtt://', 'tcp://'),
      mqttOptions: { reconnectPeriod: 200, cert: 'not read', key: 'not read' },
    });
    const refused = /Unknown protocol for secure connection: "tcp"/;
    await assert.rejects(a.start(), refused);
    assert.equal(a.connected, false);
    await assert.rejects(a.start(), refused, 'the second start() fails the same way');
    const [one, two] = [a.start(), a.start()];
    assert.equal(one, two);
    await assert.rejects(one, refused);
    await assert.rejects(two, refused);
    await a.stop();
    await assert.rejects(a.start(), refused, 'after a stop() too');
    assert.equal(ts.server.broker.addressOf(deviceId), undefined);
  });
});
