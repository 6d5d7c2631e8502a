/**
 * Events visible from any instance (docs/design.md §7, issue 6). With several instances, a
 * device's report is handled by whichever instance the broker's shared subscription picked,
 * and a rollout is driven by the lease holder; an operator's live view (the API's event
 * stream, the dashboard) is served by yet another one. Each instance therefore publishes
 * its job and execution events to the other instances over the same external
 * MQTT broker, batched (one message per 100 ms at most, so a 1,000-device wave costs a
 * handful of messages, not thousands), and re-emits theirs on its own EventBus.
 *
 * Delivery is QoS 1 but not durable: an instance that is down misses the events of that
 * time, as a browser that was closed does. The store stays the truth; events only tell
 * live views to look again. For the same reason, batches made while the broker is
 * unreachable are dropped (counted, and logged once per outage) rather than queued by
 * mqtt.js without bound until it comes back.
 *
 * A batch is bounded in bytes as well as in events (soak QA, 2026-12-06): a cancel over a few
 * hundred devices made one 500-event message of over 64 KiB; Mosquitto (max_packet_size 65536
 * in the generated config) closed the connection on it, mqtt.js sent the same QoS 1 packet
 * again after each reconnect, and nothing more reached the other instances. Now a batch closes
 * before MAX_BATCH_BYTES; an event larger alone is sent alone when the broker takes it (the
 * Maximum Packet Size of its CONNACK, MQTT 5 §3.2.2.3.6, else the generated config's), and
 * dropped with an ERROR otherwise, as one lost in an outage: its receivers read the store again
 * on their own schedule. Should a broker close the connection after each publish anyway (a
 * lower limit, a message_size_limit), the relay says so once, drops the message mqtt.js would
 * resend for ever, and goes on; its stop waits for an acknowledgement as long as
 * broker/bounded-publish.ts lets any caller, no longer.
 */
import { randomBytes } from 'node:crypto';
import mqtt, { type IClientOptions, type IConnackPacket, type MqttClient } from 'mqtt';
import { BoundedPublisher } from '../broker/bounded-publish.ts';
import { serviceConnectOptions } from '../broker/external-broker.ts';
import { BrokerOutageLog } from '../broker/outage-log.ts';
import { UpdraftError } from '../errors.ts';
import type { EventBus, UpdraftEvents } from '../events/event-bus.ts';
import { EVENT_RELAY_FILTER, eventRelayTopic, parseEventRelayTopic } from '../protocol/topics.ts';
import type { Logger } from '../util/logger.ts';

/** The events live views need from other instances. */
// device.fetched: the instance that answered a device's get is rarely the one driving rollouts;
// device.credentials: a password file watcher listens to one instance, devices change on any;
// keys.certificate: a certificate installed through the balancer reached one instance;
// viewer.tokens: a viewer token removed on one instance must be refused by all;
// artifact.changed: a build uploaded through the balancer reached one instance, its dashboards are on any;
// job.deleted: the same for a job deleted (its lists drop it);
// not device.presence: every instance hears all of it from the broker (external-broker.ts)
export const RELAYED_EVENTS = ['job.changed', 'job.deleted', 'execution.changed', 'job.log', 'artifact.changed', 'device.fetched', 'device.credentials', 'keys.certificate', 'viewer.tokens', 'operator.tokens', 'aws.thing'] as const;
type RelayedEvent = (typeof RELAYED_EVENTS)[number];
type Relayed = { [K in RelayedEvent]: { type: K; payload: UpdraftEvents[K] } }[RelayedEvent];

/** What the relay needs. */
export interface EventRelayDeps {
  /** The external broker (`--mqtt-url`), reached as the service user. */
  url: string;
  username: string;
  password: string;
  tls?: Pick<IClientOptions, 'ca' | 'cert' | 'key' | 'rejectUnauthorized' | 'servername'>;
  events: EventBus;
  logger: Logger;
  /** This instance's id in topics; default a random one. */
  instanceId?: string;
  /** Longest wait before a batch is sent, in ms. */
  flushMs?: number;
  /** Milliseconds between reconnect attempts after the connection drops (serviceConnectOptions' default). */
  reconnectPeriodMs?: number;
}

const MAX_BATCH = 500;
/**
 * The most bytes of JSON in one batch: 48 KiB, well below the 64 KiB max_packet_size of the
 * generated Mosquitto config (`broker/mosquitto-config.ts`), the smallest Updraft sets.
 */
export const MAX_BATCH_BYTES = 48 * 1024;
/** Bytes kept for the fixed header, topic and properties of the PUBLISH around a batch. */
const PACKET_OVERHEAD = 1024;
/** The broker's packet limit when its CONNACK gives none: the generated config's. */
const ASSUMED_BROKER_MAX_PACKET = 65_536;
/** Closes in a row with a publish unacknowledged after which the message is taken as the cause. */
const CLOSES_BEFORE_GIVING_UP = 3;

/** Publishes this instance's events and re-emits the other instances' ones. */
export class EventRelay {
  private readonly deps: EventRelayDeps;
  readonly instanceId: string;
  private client: MqttClient | undefined;
  /** The batch being made: each event's JSON, and their bytes with the brackets and commas. */
  private batch: string[] = [];
  private batchBytes = 2;
  private publisher: BoundedPublisher | undefined;
  /** Publishes not settled yet (BoundedPublisher bounds each): what stop() waits for. */
  private readonly pending = new Set<Promise<void>>();
  /** The largest packet the broker takes, from its last CONNACK. */
  private brokerMaxPacket = ASSUMED_BROKER_MAX_PACKET;
  /** Connection closes in a row with a publish unacknowledged, and the largest batch among them. */
  private closesUnacked = 0;
  private unackedBytes = 0;
  private loopReported = false;
  /** A CONNACK came since the last close (a failed reconnect attempt closes too). */
  private wasConnected = false;
  private timer: NodeJS.Timeout | undefined;
  private offs: (() => void)[] = [];
  /** True while re-emitting a remote event: it must not be relayed back. */
  private replaying = false;
  /** Events dropped since the broker became unreachable (logged when it is back). */
  private droppedInOutage = 0;
  /** Events dropped because the broker was unreachable, since start. */
  dropped = 0;
  /** Events dropped since start because the broker would not take them: too large alone, or in a batch it closed the connection on. */
  undeliverable = 0;
  /** The connection's errors, one line per 30 s while the broker is unreachable. */
  private readonly outageLog: BrokerOutageLog;

  constructor(deps: EventRelayDeps) {
    this.deps = deps;
    this.instanceId = deps.instanceId ?? `i-${randomBytes(6).toString('hex')}`;
    this.outageLog = new BrokerOutageLog(deps.logger, 'event relay: MQTT error');
  }

  async start(): Promise<void> {
    const d = this.deps;
    try {
      this.client = await mqtt.connectAsync(d.url, serviceConnectOptions({ clientId: `updraft-events-${this.instanceId}`, username: d.username, password: d.password, tls: d.tls, reconnectPeriodMs: d.reconnectPeriodMs }));
    } catch (err) {
      throw new UpdraftError('CONFIG', `cannot connect the event relay to the MQTT broker: ${(err as Error).message}`, { cause: err });
    }
    const client = this.client;
    // the first CONNACK came before connectAsync resolved: mqtt.js keeps it (private in its types)
    this.brokerMaxPacket = (client as unknown as { connackPacket?: IConnackPacket }).connackPacket?.properties?.maximumPacketSize ?? ASSUMED_BROKER_MAX_PACKET;
    this.publisher = new BoundedPublisher(client, d.logger, { what: 'event relay' });
    this.publisher.start();
    client.on('message', (topic, payload) => this.receive(topic, payload));
    client.on('packetreceive', (packet) => {
      if (packet.cmd === 'puback') this.closesUnacked = this.unackedBytes = 0;
      // not at 'connect': mqtt.js emits it only once it has sent again what it held, which a
      // broker closing the connection on that message never lets it finish
      // a refused CONNACK (a password not admitted) is an outage, not a close on what was sent
      if (packet.cmd === 'connack' && (packet.reasonCode ?? packet.returnCode ?? 0) === 0) {
        this.wasConnected = true;
        this.brokerMaxPacket = packet.properties?.maximumPacketSize ?? ASSUMED_BROKER_MAX_PACKET;
      }
    });
    client.on('close', () => this.closed());
    this.wasConnected = true;
    this.client.on('connect', () => {
      const errors = this.outageLog.back();
      if (this.droppedInOutage > 0 || errors > 0) d.logger.info('event relay: the broker is back', { droppedEvents: this.droppedInOutage, errors });
      this.droppedInOutage = 0;
    });
    // an error per failed reconnect attempt: the outage's first, then one line per 30 s (outage-log.ts)
    this.client.on('error', (err) => this.outageLog.error(err));
    const [granted] = await this.client.subscribeAsync(EVENT_RELAY_FILTER, { qos: 1 });
    if (!granted || granted.qos >= 0x80) {
      await this.stop();
      throw new UpdraftError('CONFIG', `the MQTT broker refused the subscription ${EVENT_RELAY_FILTER}; the ${d.username} user needs read and write access to updraft/# (see updraft broker mosquitto-config)`);
    }
    for (const type of RELAYED_EVENTS) {
      this.offs.push(d.events.on(type, (payload) => this.queue({ type, payload } as Relayed)));
    }
  }

  private queue(event: Relayed): void {
    if (this.replaying || !this.client) return;
    if (event.type === 'job.changed' && (event.payload.job.spec || event.payload.previous?.spec)) {
      // no live view reads a job's spec, and one that lists its devices runs to megabytes; its
      // count of waves goes with it (the webhook deliveries another instance records tell it)
      const { spec: _spec, ...job } = event.payload.job;
      const { spec: _previousSpec, ...previous } = event.payload.previous ?? {};
      const waves = (event.payload.job.spec as { plan?: { waves?: unknown[] } } | undefined)?.plan?.waves?.length ?? event.payload.waves;
      event = { type: 'job.changed', payload: { job, ...(event.payload.previous ? { previous: previous as typeof job } : {}), ...(waves !== undefined ? { waves } : {}) } };
    }
    const json = JSON.stringify(event);
    const bytes = Buffer.byteLength(json);
    const alone = this.brokerMaxPacket - PACKET_OVERHEAD;
    if (bytes + 2 > alone) {
      // never sent: the broker would close the connection on it, and mqtt.js send it again after each reconnect
      this.deps.logger.error('event relay: an event too large for the MQTT broker is dropped; the other instances see its change when they next read the store', { event: event.type, bytes, brokerMaxPacketBytes: this.brokerMaxPacket });
      this.undeliverable++;
      return;
    }
    // a broker set lower than the generated config bounds batches as well
    const budget = Math.min(MAX_BATCH_BYTES, alone);
    if (this.batch.length > 0 && this.batchBytes + 1 + bytes > budget) this.flush();
    this.batchBytes += bytes + (this.batch.length > 0 ? 1 : 0);
    this.batch.push(json);
    // an event of more than the budget alone (the broker takes it) goes alone
    if (this.batch.length >= MAX_BATCH || this.batchBytes >= budget) this.flush();
    else this.timer ??= setTimeout(() => this.flush(), this.deps.flushMs ?? 100);
  }

  private flush(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    const batch = this.batch;
    const bytes = this.batchBytes;
    this.batch = [];
    this.batchBytes = 2;
    if (batch.length === 0 || !this.client || !this.publisher) return;
    if (!this.client.connected) {
      if (this.droppedInOutage === 0) this.deps.logger.warn('event relay: the broker is unreachable; events are dropped until it is back', { events: batch.length });
      this.droppedInOutage += batch.length;
      this.dropped += batch.length;
      return;
    }
    this.unackedBytes = Math.max(this.unackedBytes, bytes);
    const sent = this.publisher
      .publish(eventRelayTopic(this.instanceId), `[${batch.join(',')}]`, { qos: 1 })
      .catch((err: Error) => this.deps.logger.warn('event relay: batch not published', { events: batch.length, error: err.message }))
      .finally(() => this.pending.delete(sent));
    this.pending.add(sent);
  }

  /**
   * The connection closed. With a publish unacknowledged, CLOSES_BEFORE_GIVING_UP times in a
   * row, the broker is taken to refuse that message (Mosquitto closes the connection on a packet
   * over its max_packet_size, without a word to the client); mqtt.js would send it again after
   * every reconnect, for ever, and the relay deliver nothing more. It is dropped, said once.
   */
  private closed(): void {
    const client = this.client;
    // a failed reconnect attempt (the broker is down) closes too: only a connection made counts
    if (!client || !this.wasConnected) return;
    this.wasConnected = false;
    const unacked = Object.keys(client.outgoing).map(Number);
    if (unacked.length === 0) {
      this.closesUnacked = 0;
      return;
    }
    if (++this.closesUnacked < CLOSES_BEFORE_GIVING_UP) return;
    const fields = { closes: this.closesUnacked, largestBatchBytes: this.unackedBytes, brokerMaxPacketBytes: this.brokerMaxPacket, messages: unacked.length };
    if (!this.loopReported) {
      this.loopReported = true;
      this.deps.logger.error(
        "event relay: the MQTT broker closes the relay's connection each time it sends its events, so they reach no other instance; they are dropped and the relay goes on. Check the broker's log and its packet size limit (Mosquitto: max_packet_size, message_size_limit; at least 65536 as updraft broker mosquitto-config sets)",
        fields,
      );
    } else this.deps.logger.warn('event relay: the MQTT broker closed the connection again on the events sent; dropped', fields);
    for (const id of unacked) {
      this.undeliverable += eventsIn(client, id);
      client.removeOutgoingMessage(id);
    }
    this.closesUnacked = this.unackedBytes = 0;
  }

  private receive(topic: string, payload: Buffer): void {
    const from = parseEventRelayTopic(topic);
    if (!from || from === this.instanceId) return;
    let batch: unknown;
    try {
      batch = JSON.parse(payload.toString('utf8'));
    } catch {
      this.deps.logger.warn('event relay: unreadable batch ignored', { from });
      return;
    }
    if (!Array.isArray(batch)) return;
    this.replaying = true;
    try {
      for (const e of batch as Relayed[]) {
        if (e && (RELAYED_EVENTS as readonly string[]).includes(e.type) && e.payload && typeof e.payload === 'object') this.deps.events.emit(e.type, e.payload as never);
      }
    } finally {
      this.replaying = false;
    }
  }

  async stop(): Promise<void> {
    for (const off of this.offs) off();
    this.offs = [];
    this.flush();
    // the last batches' acknowledgements, each waited for no longer than bounded-publish.ts
    // lets a caller (at once with the connection down): an undeliverable one held the stop for good
    await Promise.all(this.pending);
    this.publisher?.stop();
    this.publisher = undefined;
    const client = this.client;
    this.client = undefined;
    // mqtt.js's graceful end waits for every unacknowledged publish: those left are given up
    if (client) await client.endAsync(Object.keys(client.outgoing).length > 0);
    this.outageLog.close();
  }
}

/**
 * How many events the unacknowledged batch message `id` holds (its JSON array's length), for
 * the count of those dropped; 1 when the message cannot be read back. mqtt.js's in-memory
 * store answers at once, before the message is removed.
 */
function eventsIn(client: MqttClient, id: number): number {
  let events = 1;
  client.outgoingStore.get({ messageId: id }, (err, packet) => {
    if (err || packet?.cmd !== 'publish') return;
    try {
      const batch: unknown = JSON.parse(packet.payload.toString());
      if (Array.isArray(batch)) events = batch.length;
    } catch {
      // not a batch of ours: counted as one
    }
  });
  return events;
}
