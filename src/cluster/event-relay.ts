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
 */
import { randomBytes } from 'node:crypto';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
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

/** Publishes this instance's events and re-emits the other instances' ones. */
export class EventRelay {
  private readonly deps: EventRelayDeps;
  readonly instanceId: string;
  private client: MqttClient | undefined;
  private batch: Relayed[] = [];
  private timer: NodeJS.Timeout | undefined;
  private offs: (() => void)[] = [];
  /** True while re-emitting a remote event: it must not be relayed back. */
  private replaying = false;
  /** Events dropped since the broker became unreachable (logged when it is back). */
  private droppedInOutage = 0;
  /** Events dropped because the broker was unreachable, since start. */
  dropped = 0;
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
    this.client.on('message', (topic, payload) => this.receive(topic, payload));
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
    this.batch.push(event);
    if (this.batch.length >= MAX_BATCH) this.flush();
    else this.timer ??= setTimeout(() => this.flush(), this.deps.flushMs ?? 100);
  }

  private flush(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    const batch = this.batch;
    this.batch = [];
    if (batch.length === 0 || !this.client) return;
    if (!this.client.connected) {
      if (this.droppedInOutage === 0) this.deps.logger.warn('event relay: the broker is unreachable; events are dropped until it is back', { events: batch.length });
      this.droppedInOutage += batch.length;
      this.dropped += batch.length;
      return;
    }
    this.client.publish(eventRelayTopic(this.instanceId), JSON.stringify(batch), { qos: 1 }, (err) => {
      if (err) this.deps.logger.warn('event relay: batch not published', { events: batch.length, error: err.message });
    });
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
    const client = this.client;
    this.client = undefined;
    if (client) await client.endAsync();
    this.outageLog.close();
  }
}
