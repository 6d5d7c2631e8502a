/**
 * Events between instances over a real (private) Mosquitto: what one instance emits, the
 * other re-emits once; nothing comes back to its sender; a malformed batch is ignored; batches
 * stay under the generated config's max_packet_size, an event too large alone is dropped, and a
 * broker closing the connection on what the relay sends does not keep it (or its stop) for ever.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import mqtt from 'mqtt';
import { EventRelay, MAX_BATCH_BYTES } from '../../src/cluster/event-relay.ts';
import { EventBus } from '../../src/events/event-bus.ts';
import { eventRelayTopic } from '../../src/protocol/topics.ts';
import { createLogger, silentLogger } from '../../src/util/logger.ts';
import { eventually } from '../helpers/cli.ts';
import { freePort } from '../helpers/free-port.ts';
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

    it('keeps batches under the broker’s packet limit; an event too large alone is dropped with an ERROR', async () => {
      // Mosquitto as updraft broker mosquitto-config writes it: max_packet_size 65536. A
      // 500-event batch of these is about 160 KiB: the broker closed the connection on it, and
      // mqtt.js sent it again after each reconnect, for ever (soak QA)
      const [a, b] = [new EventBus(), new EventBus()];
      const logged: string[] = [];
      const sender = new EventRelay({ url: broker.serviceUrl, username: 'operator', password: TOKEN, events: a, logger: createLogger({ level: 'info', write: (l) => logged.push(l) }), instanceId: 'i-size-a' });
      const receiver = new EventRelay({ url: broker.serviceUrl, username: 'operator', password: TOKEN, events: b, logger: silentLogger, instanceId: 'i-size-b' });
      for (const r of [sender, receiver]) {
        await r.start();
        relays.push(r);
      }
      const seen: string[] = [];
      b.on('aws.thing', (e) => seen.push(e.thing.slice(0, 20)));
      const n = 1_500;
      for (let i = 0; i < n; i++) a.emit('aws.thing', { thing: `t-${String(i).padStart(5, '0')}-${'x'.repeat(300)}` });
      // one event larger than a batch may be, under the broker's limit: sent alone
      a.emit('aws.thing', { thing: `big-${'y'.repeat(MAX_BATCH_BYTES + 4_000)}` });
      // one no broker configured so takes: dropped, said with its type and size
      a.emit('aws.thing', { thing: `huge-${'z'.repeat(70_000)}` });
      a.emit('aws.thing', { thing: 'after' });
      await eventually(async () => (seen.includes('after') ? true : undefined), 30_000, 'the event after the burst');
      assert.equal(seen.filter((t) => t.startsWith('t-')).length, n, 'every event of the burst');
      assert.ok(seen.includes(`big-${'y'.repeat(16)}`), 'the large event sent alone');
      assert.ok(!seen.some((t) => t.startsWith('huge-')), 'the event too large alone not sent');
      assert.equal(sender.undeliverable, 1);
      const dropped = logged.filter((l) => l.includes('too large for the MQTT broker'));
      assert.equal(dropped.length, 1, logged.join('\n'));
      assert.match(dropped[0]!, /ERROR/);
      assert.match(dropped[0]!, /event=aws\.thing/);
      assert.match(dropped[0]!, /bytes=700\d\d/);
      assert.match(dropped[0]!, /brokerMaxPacketBytes=65536/);
      assert.ok(!logged.some((l) => l.includes('MQTT error')), `the connection held: ${logged.join('\n')}`);
    });

    it('says once that the broker closes the connection on what it sends, drops it and goes on; stops at once meanwhile', async () => {
      // a broker that closes the connection on a message it will not take without advertising a
      // limit in its CONNACK (another broker's message size limit, a proxy's): a middlebox in
      // front of the real Mosquitto closes any connection once its client sent more than 16 KiB
      const cut = await startCuttingProxy(broker.servicePort, 16 * 1024);
      try {
        const [a, b] = [new EventBus(), new EventBus()];
        const logged: string[] = [];
        const sender = new EventRelay({ url: `mqtt://127.0.0.1:${cut.port}`, username: 'operator', password: TOKEN, events: a, logger: createLogger({ level: 'info', write: (l) => logged.push(l) }), instanceId: 'i-cut-a', reconnectPeriodMs: 100 });
        const receiver = new EventRelay({ url: broker.serviceUrl, username: 'operator', password: TOKEN, events: b, logger: silentLogger, instanceId: 'i-cut-b' });
        for (const r of [sender, receiver]) {
          await r.start();
          relays.push(r);
        }
        const seen: string[] = [];
        b.on('aws.thing', (e) => seen.push(e.thing.slice(0, 10)));
        for (let i = 0; i < 100; i++) a.emit('aws.thing', { thing: `t-${'x'.repeat(300)}` });
        await eventually(async () => (logged.some((l) => l.includes("closes the relay's connection")) ? true : undefined), 30_000, 'the relay saying what happens');
        const line = logged.find((l) => l.includes("closes the relay's connection"))!;
        assert.match(line, /ERROR/);
        assert.match(line, /max_packet_size/);
        // counted in events (the 100 of the batch), not messages (test/cluster/relay-metrics.test.ts: /metrics)
        assert.equal(sender.undeliverable, 100, 'the events of the dropped batch');
        // the relay goes on: what comes next reaches the other instance
        a.emit('aws.thing', { thing: 'after' });
        await eventually(async () => (seen.includes('after') ? true : undefined), 30_000, 'the event after the dropped batch');
        assert.equal(seen.filter((t) => t.startsWith('t-')).length, 0);
        const closes = cut.closed;

        // a stop while the broker closes the connection on a batch: it does not wait for its acknowledgement
        for (let i = 0; i < 100; i++) a.emit('aws.thing', { thing: `t-${'x'.repeat(300)}` });
        await eventually(async () => (cut.closed > closes ? true : undefined), 30_000, 'the connection closed on the second batch');
        // a hang guard, not a speed check: the stop waited for that acknowledgement for ever
        const stopped = await Promise.race([sender.stop().then(() => 'stopped'), new Promise((r) => setTimeout(r, 20_000, 'hung').unref())]);
        assert.equal(stopped, 'stopped');
        assert.equal(logged.filter((l) => l.includes("closes the relay's connection")).length, 1, 'said once');
      } finally {
        await cut.stop();
      }
    });
  });
}

/** A TCP proxy to `port` that closes a connection once its client has sent more than `limit` bytes on it. */
async function startCuttingProxy(port: number, limit: number): Promise<{ port: number; readonly closed: number; stop: () => Promise<void> }> {
  const sockets = new Set<net.Socket>();
  let closed = 0;
  const server = net.createServer((client) => {
    const upstream = net.connect(port, '127.0.0.1');
    sockets.add(client).add(upstream);
    let sent = 0;
    client.on('data', (d) => {
      sent += d.length;
      if (sent > limit) {
        closed++;
        client.destroy();
        upstream.destroy();
      } else upstream.write(d);
    });
    upstream.on('data', (d) => client.write(d));
    const end = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('close', end).on('error', end);
    upstream.on('close', end).on('error', end);
  });
  const listenPort = await freePort();
  await new Promise<void>((resolve) => server.listen(listenPort, '127.0.0.1', resolve));
  return {
    port: listenPort,
    get closed() {
      return closed;
    },
    stop: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
