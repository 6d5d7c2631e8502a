/**
 * The MessageBus on an external MQTT broker (Mosquitto, EMQX, HiveMQ, VerneMQ), for the
 * production topology (DESIGN.md §7). Updraft connects as a service client (user
 * `operator`, the operator token as password) with MQTT 5 and takes device requests through
 * shared subscriptions (`$share/<group>/state/+/update`, ...): the broker hands each request
 * to exactly one instance of the group, so N instances split the load and every request is
 * answered once. Answers are published by the instance that handled the request.
 *
 * Who sent a request: the broker authenticates devices and its ACL lets a device publish
 * only on its own `state/{id}/...` request topics (`updraft broker mosquitto-config`), but
 * MQTT does not tell a subscriber who published. So a request is always attributed to the
 * device its topic names, never to an operator: over an external broker, operators change
 * `desired.software` through the API (which calls the replica directly), and a device can
 * never pass as an operator.
 *
 * Presence: a broker does not report other clients' connects to a subscriber, so devices
 * say it themselves (the agent's retained `state/{id}/presence` and its Will that clears it,
 * `protocol/presence.ts`). Every instance subscribes to all of it, not shared: each keeps
 * the whole fleet's online view (shared subscriptions get no retained messages, MQTT 5
 * §4.8.2). At every connect the instance subscribes again, and the broker replays a
 * retained message for each device online now; a message of its own, published after the
 * SUBACK on `presenceSyncTopic`, comes back after the replay (the broker handles a client's
 * packets in order), and every device it knew online that the replay did not name has gone
 * (its Will came while this instance was away, or the broker restarted without them).
 */
import { randomBytes } from 'node:crypto';
import os from 'node:os';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { UpdraftError } from '../errors.ts';
import type { Lease } from '../cluster/lease.ts';
import { awsThingOf } from '../protocol/aws-topics.ts';
import { PRESENCE_WILL, parsePresence } from '../protocol/presence.ts';
import { PRESENCE_FILTER, parseDeviceRequestTopic, parsePresenceTopic, presenceSyncTopic, presenceTopic } from '../protocol/topics.ts';
import type { Logger } from '../util/logger.ts';
import { BoundedPublisher } from './bounded-publish.ts';
import type { MessageBus, PresenceEvent, RequestHandler } from './message-bus.ts';
import { BrokerOutageLog } from './outage-log.ts';

/** Options of the external broker connection. */
export interface ExternalBrokerOptions {
  /** mqtt://host:1883 or mqtts://host:8883. */
  url: string;
  username: string;
  password: string;
  /** Shared-subscription group: instances with the same group split the requests. */
  shareGroup: string;
  logger: Logger;
  /** Client id; default `updraft-<host>-<pid>-<random>` (each instance needs its own). */
  clientId?: string;
  /** Extra TLS options for mqtts (ca, cert, key, rejectUnauthorized...). */
  tls?: Pick<IClientOptions, 'ca' | 'cert' | 'key' | 'rejectUnauthorized' | 'servername'>;
  /** Milliseconds between reconnect attempts after the connection drops. */
  reconnectPeriodMs?: number;
  /**
   * Request filters one instance at a time consumes, with a plain subscription while it
   * holds `lease` (checked every `intervalMs`, 5 s by default): for topics a broker's shared
   * subscriptions miss. Mosquitto 2.0 never delivers `$`-topics (the AWS IoT families,
   * `$aws/things/...`) to `$share/...` subscribers.
   */
  exclusive?: { filters: readonly string[]; lease: Lease; intervalMs?: number };
}

/**
 * The Receive Maximum an Updraft instance asks of its broker (MQTT 5): how many QoS 1
 * messages the broker may send it before their PUBACKs, here the most MQTT allows. Every
 * device's requests reach an instance through one connection. Left unsaid, Mosquitto keeps
 * 20 in flight, queues 1,000 more and then drops the rest without telling anyone: a fleet
 * cycling online made it drop reports (its log said "Outgoing messages are being
 * dropped"), whose devices waited for answers that never came and left idle. mqtt.js
 * acknowledges each message as it reads it, so what is in flight is what the socket holds;
 * a request is refused, when one must be, by the replica, with an answer the device reads.
 */
export const SERVICE_RECEIVE_MAXIMUM = 65_535;

/**
 * The MQTT keepalive of an instance's connections to its broker, in seconds. mqtt.js notices a
 * connection cut without a TCP close (a network partition, a NAT or firewall dropping its
 * state) only when a keepalive goes unanswered: at 1.5 times this, 90 s with mqtt.js's default
 * of 60. Until then the instance held its messages for no one (its callers waited up to 10 s
 * each, bounded-publish.ts), the leader kept the rollouts' lease although cut off (the 5 s
 * grace of 4a4d561 counts from when the cut is noticed) and /readyz said ready. At 15 s a cut
 * is noticed within 22.5 s; the cost is one PINGREQ per 15 s on an idle connection (a busy
 * one sends no ping: its acknowledgements count), nothing per device. Devices keep their own.
 */
export const SERVICE_KEEPALIVE_S = 15;

/**
 * The options of every connection an Updraft instance opens to an external broker (the
 * request subscriptions here, the event relay between instances): MQTT 5 with
 * SERVICE_RECEIVE_MAXIMUM, SERVICE_KEEPALIVE_S, and a clean session, since there is no session
 * state to lose (a shared subscription's messages go to the live members; relayed events are
 * live only).
 */
export function serviceConnectOptions(o: { clientId: string; username: string; password: string; tls?: ExternalBrokerOptions['tls']; reconnectPeriodMs?: number }): IClientOptions {
  return {
    protocolVersion: 5,
    clientId: o.clientId,
    username: o.username,
    password: o.password,
    clean: true,
    keepalive: SERVICE_KEEPALIVE_S,
    properties: { receiveMaximum: SERVICE_RECEIVE_MAXIMUM },
    reconnectPeriod: o.reconnectPeriodMs ?? 1_000,
    // a broker that refuses the CONNACK once (a reload with a password file it cannot read, the
    // operator token not written yet) is tried again: mqtt.js stops reconnecting for good after
    // a refused CONNACK without it, and an instance stayed out of service, /readyz 503, until
    // restarted (docs QA, 2026-12-06). At start, connectAsync still rejects on the first refusal
    reconnectOnConnackError: true,
    connectTimeout: 10_000,
    ...(o.tls ?? {}),
  };
}

/** Request topic filters, classic and named shadows: `state/+/update`, `state/+/shadow/+/get`, ... */
export const REQUEST_FILTERS: readonly string[] = [...['update', 'get', 'delete'].flatMap((op) => [`state/+/${op}`, `state/+/shadow/+/${op}`]), 'state/+/credentials/request', 'state/+/certificate/renew', 'state/+/job-log'];

/** mqtt.js over MQTT 5 with shared subscriptions, as a MessageBus. */
export class ExternalBroker implements MessageBus {
  private readonly opts: ExternalBrokerOptions;
  private client: MqttClient | undefined;
  private requestHandler: RequestHandler = () => {};
  private presenceHandler: (event: PresenceEvent) => void = () => {};
  /** Devices online, as their presence messages said. */
  private readonly online = new Set<string>();
  /** While the broker replays the retained presence: the marker awaited, and the devices it named online. */
  private replay: { token: string; named: Set<string> } | undefined;
  private syncTopic = '';
  private exclusiveTimer: NodeJS.Timeout | undefined;
  private exclusiveSubscribed = false;
  /** The connection's errors, one line per 30 s while the broker is unreachable. */
  private outageLog: BrokerOutageLog | undefined;
  /** Publishes without waiting out an outage (bounded-publish.ts). */
  private publisher: BoundedPublisher | undefined;

  constructor(opts: ExternalBrokerOptions) {
    this.opts = opts;
  }

  /** The broker URL without credentials, for messages. */
  get where(): string {
    const u = new URL(this.opts.url);
    u.username = '';
    u.password = '';
    return u.toString();
  }

  /** True while connected. */
  get connected(): boolean {
    return this.client?.connected ?? false;
  }

  onRequest(handler: RequestHandler): void {
    this.requestHandler = handler;
  }

  onPresence(handler: (event: PresenceEvent) => void): void {
    this.presenceHandler = handler;
  }

  /** Connects, subscribes to the shared request filters and waits for the SUBACK. */
  async start(): Promise<void> {
    const o = this.opts;
    const log = o.logger;
    const clientId = o.clientId ?? `updraft-${os.hostname().slice(0, 32)}-${process.pid}-${randomBytes(3).toString('hex')}`;
    let client: MqttClient;
    try {
      client = await mqtt.connectAsync(o.url, serviceConnectOptions({ clientId, username: o.username, password: o.password, tls: o.tls, reconnectPeriodMs: o.reconnectPeriodMs }));
    } catch (err) {
      const code = (err as { code?: unknown }).code;
      // MQTT 5 CONNACK 0x86 bad user name or password, 0x87 not authorized (§3.2.2.2.8): the
      // broker's password file was not made from this instance's token, the usual first-start slip
      if (code === 0x86 || code === 0x87) {
        throw new UpdraftError('CONFIG', `the MQTT broker ${this.where} refused user ${o.username} (${(err as Error).message}): its password must be the operator token this instance started with (<data-dir>/operator-token), one token shared by every instance; write the broker's password file from it with updraft broker mosquitto-config --offline (docs/deployment.md, the first start)`, { cause: err });
      }
      throw new UpdraftError('CONFIG', `cannot connect to the MQTT broker ${this.where} as ${o.username}: ${(err as Error).message}; check --mqtt-url and the broker's password file`, { cause: err });
    }
    this.syncTopic = presenceSyncTopic(clientId);
    client.on('message', (topic, payload) => {
      const present = parsePresenceTopic(topic);
      if (present !== undefined) {
        const online = parsePresence(payload); // undefined: malformed, ignored
        if (online !== undefined) this.presence(present, online);
        return;
      }
      if (topic === this.syncTopic) return this.replayed(payload.toString());
      // the broker's ACL admits only device {id} (or an operator) on state/{id}/... and
      // $aws/things/{id}/...: attribute it to the device (issue 9: the AWS doors)
      const deviceId = parseDeviceRequestTopic(topic)?.deviceId ?? awsThingOf(topic);
      if (deviceId === undefined) return;
      this.requestHandler({ topic, payload, sender: { kind: 'device', id: deviceId } });
    });
    // mqtt.js handles the packets of a read one per tick and flushes after each, so the
    // PUBACK of every request went out in its own system call (95% of this connection's
    // writes under load, measured with strace). Writes of a turn of the event
    // loop that received packets are held until the turn ends and leave together.
    let corked = false;
    client.on('packetreceive', () => {
      const stream = client.stream;
      if (corked || !stream?.writable) return;
      corked = true;
      stream.cork();
      setImmediate(() => {
        corked = false;
        stream.uncork();
      });
    });
    client.on('offline', () => log.warn('MQTT broker connection lost; reconnecting', { broker: this.where }));
    client.on('reconnect', () => log.debug('reconnecting to the MQTT broker', { broker: this.where }));
    // an error per failed reconnect attempt (ECONNREFUSED): the outage's first, then one line per 30 s (outage-log.ts)
    const outageLog = new BrokerOutageLog(log, 'MQTT broker error', { broker: this.where });
    this.outageLog = outageLog;
    client.on('error', (err) => outageLog.error(err));
    // what was published during the outage is sent by then: mqtt.js emits connect after its store
    const publisher = new BoundedPublisher(client, log, { broker: this.where });
    publisher.start();
    this.publisher = publisher;
    client.on('connect', () => log.info('MQTT broker connection back', { broker: this.where, errors: outageLog.back(), ...publisher.back() }));
    this.client = client;
    const filters = REQUEST_FILTERS.map((f) => `$share/${o.shareGroup}/${f}`);
    const granted = await client.subscribeAsync(filters, { qos: 1 });
    const refused = granted.filter((g) => g.qos >= 0x80).map((g) => g.topic);
    if (refused.length > 0) {
      await this.stop();
      throw new UpdraftError('CONFIG', `the MQTT broker ${this.where} refused the subscriptions ${refused.join(', ')}; the ${o.username} user needs read access to state/# (see updraft broker mosquitto-config)`);
    }
    // presence, to every instance (file comment): now, and again at every reconnect
    await this.syncPresence(client);
    client.on('connect', () => void this.syncPresence(client));
    if (o.exclusive) {
      // re-subscribe after a reconnect (clean session) while holding the lease
      client.on('connect', () => {
        this.exclusiveSubscribed = false;
        void this.checkExclusive();
      });
      await this.checkExclusive();
      this.exclusiveTimer = setInterval(() => void this.checkExclusive(), o.exclusive.intervalMs ?? 5_000);
    }
    log.info('connected to the MQTT broker', { broker: this.where, clientId, shareGroup: o.shareGroup });
  }

  /** A device's presence message: reported when it changes what this instance knew. */
  private presence(deviceId: string, online: boolean): void {
    if (online) this.replay?.named.add(deviceId);
    else this.replay?.named.delete(deviceId);
    if (this.online.has(deviceId) === online) return;
    if (online) this.online.add(deviceId);
    else this.online.delete(deviceId);
    this.presenceHandler({ deviceId, online });
  }

  /** (Re)subscribes to every device's presence and marks the end of the broker's replay. */
  private async syncPresence(client: MqttClient): Promise<void> {
    const token = randomBytes(6).toString('hex');
    this.replay = { token, named: new Set() };
    try {
      // QoS 0: the replay of a large fleet comes at once, and Mosquitto drops the QoS 1
      // messages beyond the Receive Maximum and its queue of 1,000 (measured: 66,535 of
      // 100,000 retained came at QoS 1, all of them at QoS 0). A message lost on a live
      // connection is as unlikely as any; the next reconnect's replay corrects the view.
      const granted = await client.subscribeAsync([PRESENCE_FILTER, this.syncTopic], { qos: 0 });
      const refused = granted.filter((g) => g.qos >= 0x80).map((g) => g.topic);
      if (refused.length > 0) {
        this.replay = undefined;
        this.opts.logger.warn('the MQTT broker refused the presence subscriptions: devices will not be seen online', { broker: this.where, filters: refused.join(', ') });
        return;
      }
      await client.publishAsync(this.syncTopic, token, { qos: 1 });
    } catch (err) {
      // the connection dropped meanwhile: the next connect syncs again
      this.opts.logger.debug('presence not synced', { broker: this.where, error: (err as Error).message });
    }
  }

  /** The marker came back: the replay is over, and the devices it did not name have gone. */
  private replayed(token: string): void {
    const replay = this.replay;
    if (!replay || token !== replay.token) return; // an older sync's
    this.replay = undefined;
    for (const deviceId of this.online) if (!replay.named.has(deviceId)) this.presence(deviceId, false);
  }

  /** Subscribes the exclusive filters while this instance holds their lease, and unsubscribes when it lost it. */
  private async checkExclusive(): Promise<void> {
    const ex = this.opts.exclusive;
    const client = this.client;
    if (!ex || !client) return;
    try {
      const held = await ex.lease.acquire();
      if (held && !this.exclusiveSubscribed) {
        const granted = await client.subscribeAsync([...ex.filters], { qos: 1 });
        const refused = granted.filter((g) => g.qos >= 0x80).map((g) => g.topic);
        if (refused.length > 0) this.opts.logger.error('the MQTT broker refused subscriptions', { broker: this.where, filters: refused.join(', ') });
        this.exclusiveSubscribed = true;
      } else if (!held && this.exclusiveSubscribed) {
        await client.unsubscribeAsync([...ex.filters]);
        this.exclusiveSubscribed = false;
      }
    } catch (err) {
      this.opts.logger.warn('exclusive subscriptions not updated; retrying', { broker: this.where, error: (err as Error).message });
    }
  }

  /**
   * Resolves once the broker has taken the message, or at once while the connection is down:
   * the message is held and sent when it is back (bounded-publish.ts), so that no caller (an
   * API request among them) waits for the end of an outage.
   */
  publish(topic: string, payload: string | Buffer, qos: 0 | 1 = 1): Promise<void> {
    const publisher = this.publisher;
    if (!publisher) return Promise.reject(new UpdraftError('INTERNAL', 'MQTT broker connection is not started'));
    return publisher.publish(topic, payload, { qos });
  }

  /**
   * Clears a device's retained presence (`protocol/presence.ts`), as its Will would: for a
   * device whose credentials were withdrawn. Mosquitto closes such a connection at the reload
   * of its password file the way it closes one for a DISCONNECT, so it publishes no Will, and
   * the retained `{"online":true}` would show the device online for good, replayed to every
   * instance at each start (QA). Every instance hears it, this one included.
   */
  clearPresence(deviceId: string): Promise<void> {
    const publisher = this.publisher;
    if (!publisher) return Promise.reject(new UpdraftError('INTERNAL', 'MQTT broker connection is not started'));
    return publisher.publish(presenceTopic(deviceId), PRESENCE_WILL, { qos: 1, retain: true });
  }

  async stop(): Promise<void> {
    const client = this.client;
    this.client = undefined;
    this.publisher?.stop();
    this.publisher = undefined;
    clearInterval(this.exclusiveTimer);
    this.exclusiveTimer = undefined;
    // without force, mqtt.js waits for its outgoing store to empty, which it does only once
    // reconnected: stopped during an outage with a message held, it waited for ever (`updraft
    // server` hit its stop limit and exited 1). Not only when disconnected: on a silent cut
    // (no TCP close) the client says connected until its keepalive, and an unacknowledged
    // QoS 1 publish held the stop the same way (event-relay.ts's stop does the same). What is
    // held is lost (bounded-publish.ts: the store holds what it derives from)
    if (client) await client.endAsync(!client.connected || Object.keys(client.outgoing).length > 0);
    this.outageLog?.close();
    if (this.opts.exclusive) await this.opts.exclusive.lease.release();
  }
}
