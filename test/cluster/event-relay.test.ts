/**
 * Events between instances over a real (private) Mosquitto: what one instance emits, the
 * other re-emits once; nothing comes back to its sender; a malformed batch is ignored.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import mqtt from 'mqtt';
import { EventRelay } from '../../src/cluster/event-relay.ts';
import { EventBus } from '../../src/events/event-bus.ts';
import { eventRelayTopic } from '../../src/protocol/topics.ts';
import { createLogger, silentLogger } from '../../src/util/logger.ts';
import { eventually } from '../helpers/cli.ts';
import { publishBurstWhileBlocked } from '../helpers/mqtt-client.ts';
import { findMosquitto, mosquittoUnavailable, startTestMosquitto, type TestMosquitto } from '../helpers/mosquitto.ts';

const TOKEN = `updr_relay_test_${'r'.repeat(24)}`;
const found = findMosquitto();

if (!found.ok) {
  const message = mosquittoUnavailable(found.reason, 'event relay test');
  it('event relay', (t) => t.skip(message));
} else {
  describe('event relay', () => {
    let broker: TestMosquitto;
    const relays: EventRelay[] = [];
    before(async () => {
      broker = await startTestMosquitto(found.bin, { operatorToken: TOKEN, devices: [], secrets: new Map() });
    });
    after(async () => {
      for (const r of relays) await r.stop();
      await broker?.stop();
    });

    it('re-emits the other instance’s events once and never echoes its own', async () => {
      const [a, b] = [new EventBus(), new EventBus()];
      for (const [events, instanceId] of [[a, 'i-a'], [b, 'i-b']] as const) {
        const relay = new EventRelay({ url: broker.serviceUrl, username: 'operator', password: TOKEN, events, logger: silentLogger, instanceId, flushMs: 20 });
        await relay.start();
        relays.push(relay);
      }
      const onA: string[] = [];
      const onB: string[] = [];
      a.on('aws.thing', (e) => onA.push(e.thing));
      b.on('aws.thing', (e) => onB.push(e.thing));
      a.emit('aws.thing', { thing: 'thing-1' });
      a.emit('aws.thing', { thing: 'thing-2' });
      await eventually(async () => (onB.length === 2 ? true : undefined), 10_000, 'b sees both');
      assert.deepEqual(onB, ['thing-1', 'thing-2']);
      // b re-emitted them on its bus; none of that may travel back to a
      // presence is not relayed: every instance hears it from the broker itself
      const presence: string[] = [];
      a.on('device.presence', (e) => presence.push(e.deviceId));
      b.emit('device.presence', { deviceId: 'd-1', online: true });
      // a device's get answered by b reaches a, which may be the instance driving rollouts
      const fetched: string[] = [];
      a.on('device.fetched', (e) => fetched.push(e.deviceId));
      b.emit('device.fetched', { deviceId: 'd-2' });
      // a device registered or revoked through b reaches a password file watcher listening to a
      const credentials: string[] = [];
      a.on('device.credentials', (e) => credentials.push(e.deviceId));
      b.emit('device.credentials', { deviceId: 'd-3' });
      // a device's log of a failed job taken by b reaches a dashboard streaming from a
      const logs: unknown[] = [];
      a.on('job.log', (e) => logs.push(e));
      b.emit('job.log', { jobId: 'job-1', deviceId: 'd-4', agentJobId: 'job-1:2', lineCount: 3 });
      // a build uploaded through b reaches the artifact list of a dashboard streaming from a
      const artifacts: unknown[] = [];
      a.on('artifact.changed', (e) => artifacts.push(e));
      b.emit('artifact.changed', { name: 'fw', version: '2.0.0', change: 'added' });
      await eventually(async () => (fetched.length === 1 && credentials.length === 1 && logs.length === 1 && artifacts.length === 1 ? true : undefined), 10_000, 'a sees b’s fetch, credentials change, job log and artifact change');
      assert.deepEqual(artifacts, [{ name: 'fw', version: '2.0.0', change: 'added' }]);
      assert.deepEqual(fetched, ['d-2']);
      assert.deepEqual(credentials, ['d-3']);
      assert.deepEqual(logs, [{ jobId: 'job-1', deviceId: 'd-4', agentJobId: 'job-1:2', lineCount: 3 }]);
      assert.deepEqual(presence, [], 'b’s presence event, relayed no earlier than its fetch, was not relayed');
      assert.deepEqual(onA, ['thing-1', 'thing-2'], 'a saw only its own two, not echoes');

      // a job's write reaches a with the record it replaced (a webhook sender that took over
      // judges the change by it), both without their spec, and the spec's count of waves (what
      // a webhook delivery recorded there tells)
      const jobs: unknown[] = [];
      a.on('job.changed', (e) => jobs.push(e));
      const spec = { plan: { waves: [{ count: 1 }, { count: 1 }] } };
      const head = { jobId: 'job-2', artifactName: 'fw', artifactVersion: '2.0.0', createdAt: 1, updatedAt: 1, version: 1 };
      b.emit('job.changed', { job: { ...head, status: 'IN_PROGRESS', progress: { wave: 1 }, version: 2, spec }, previous: { ...head, status: 'PAUSED', progress: { wave: 0 }, spec } });
      await eventually(async () => (jobs.length === 1 ? true : undefined), 10_000, 'a sees b’s job write');
      assert.deepEqual(jobs, [{ job: { ...head, status: 'IN_PROGRESS', progress: { wave: 1 }, version: 2 }, previous: { ...head, status: 'PAUSED', progress: { wave: 0 } }, waves: 2 }]);

      // garbage on the topic is ignored; the relay keeps working
      const raw = await mqtt.connectAsync(broker.serviceUrl, { username: 'operator', password: TOKEN, reconnectPeriod: 0 });
      await raw.publishAsync(eventRelayTopic('i-x'), 'not json', { qos: 1 });
      await raw.publishAsync(eventRelayTopic('i-x'), JSON.stringify([{ type: 'unknown.event', payload: {} }, { type: 'aws.thing', payload: { thing: 'thing-3' } }]), { qos: 1 });
      await raw.endAsync();
      await eventually(async () => (onB.includes('thing-3') ? true : undefined), 10_000, 'the valid event of a mixed batch');
    });

    it('takes a burst of batches far beyond what the broker queues by default', async () => {
      // Mosquitto keeps 20 QoS 1 messages in flight to a client unless its Receive Maximum
      // says more, queues 1,000 more and drops the rest; the burst comes while this process
      // is blocked, so the relay acknowledges nothing until the broker holds all of it
      const events = new EventBus();
      const relay = new EventRelay({ url: broker.serviceUrl, username: 'operator', password: TOKEN, events, logger: silentLogger, instanceId: 'i-burst' });
      await relay.start();
      relays.push(relay);
      const n = 2_500;
      const seen = new Set<string>();
      events.on('aws.thing', (e) => seen.add(e.thing));
      publishBurstWhileBlocked(broker.serviceUrl, { clientId: 'burst-peer', username: 'operator', password: TOKEN }, eventRelayTopic('i-peer'), n, '[{"type":"aws.thing","payload":{"thing":"t-$i"}}]');
      const deadline = Date.now() + 30_000;
      while (seen.size < n && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      assert.equal(seen.size, n, `the relay re-emitted ${seen.size} of ${n} batches`);
    });

    it('drops (and counts, and logs once) what it cannot send while the broker is unreachable', async () => {
      const own = await startTestMosquitto(found.bin, { operatorToken: TOKEN, devices: [], secrets: new Map() });
      const events = new EventBus();
      const logged: string[] = [];
      const relay = new EventRelay({ url: own.serviceUrl, username: 'operator', password: TOKEN, events, logger: createLogger({ level: 'info', write: (l) => logged.push(l) }), instanceId: 'i-down', flushMs: 5 });
      relays.push(relay);
      await relay.start();
      events.emit('aws.thing', { thing: 'sent' });
      await eventually(async () => (relay.dropped === 0 && logged.length === 0 ? true : undefined), 10_000, 'sent while up');
      await own.stop();
      // the relay notices the broker is gone (its reconnects fail meanwhile)
      const outage = async () => {
        events.emit('aws.thing', { thing: 'during outage' });
        return relay.dropped > 0 ? true : undefined;
      };
      await eventually(outage, 10_000, 'batches dropped while the broker is down');
      const before = relay.dropped;
      for (let i = 0; i < 1000; i++) events.emit('aws.thing', { thing: `t${i}` });
      await eventually(async () => (relay.dropped >= before + 1000 ? true : undefined), 10_000, 'every later event counted as dropped');
      assert.equal(logged.filter((l) => l.includes('broker is unreachable')).length, 1, 'one warning per outage, not one per batch');
    });
  });
}
