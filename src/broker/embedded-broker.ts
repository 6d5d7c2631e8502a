/**
 * The embedded MQTT broker (aedes, MQTT 3.1.1 over TCP) and the in-process MessageBus over it.
 *
 * Device requests are consumed through aedes's `authorizePublish` hook, in-process, rather
 * than by a wildcard MQTT subscriber: a QoS 1 wildcard subscriber that falls behind while
 * many clients disconnect overflows the stack inside mqemitter (`RangeError: Maximum call
 * stack size exceeded`). The hook hands each request to the replica's bounded queue and lets
 * aedes go on (and write the PUBACK) once the request is handled, so aedes itself never
 * holds a backlog for us: each connection waits for its own requests only.
 */
import { createRequire } from 'node:module';
import net from 'node:net';
import { Duplex, type Readable } from 'node:stream';
import tls from 'node:tls';
import { Aedes, type Client, type PublishPacket } from 'aedes';
import mqemitter from 'mqemitter';
import { UpdraftError } from '../errors.ts';
import { SKEW_MS } from '../pki/certificate-authority.ts';
import { AWS_THINGS_PREFIX } from '../protocol/aws-topics.ts';
import { parseDeviceRequestTopic, parsePresenceTopic } from '../protocol/topics.ts';
import { ThrottledLog } from '../util/log-throttle.ts';
import type { Logger } from '../util/logger.ts';
import { listenOn } from '../util/listen.ts';
import { FileLimitGate } from '../util/open-file-limit.ts';
import { AckOrder } from './ack-order.ts';
import { OPERATOR_USERNAME, type Authenticator } from './authenticator.ts';
import { ConnectAdmission, type AdmissionLimits, type Refusal } from './connect-admission.ts';
import { ForwardOnce } from './forward-once.ts';
import { InboundGate } from './inbound-gate.ts';
import { SessionQueues } from './session-queues.ts';
import type { MessageBus, PresenceEvent, RequestHandler, Sender } from './message-bus.ts';
import { AEDES_MAX_INFLIGHT_INBOUND, MAX_DEVICE_QOS2_AWAITING_RELEASE, MAX_OPERATOR_QOS2_AWAITING_RELEASE, Qos2Receipts } from './qos2-receipts.ts';
import { SubscriptionInterest } from './subscription-interest.ts';
import { SubscriptionQuota } from './subscription-quota.ts';
import { TopicMatcher, type Matcher } from './topic-matcher.ts';
import { mayPublish, maySubscribe } from './topic-acl.ts';

/** Options of the embedded broker. */
export interface EmbeddedBrokerOptions {
  /** TCP port for MQTT (1883 by default; 0 picks a free one). */
  port: number;
  /** Interface to listen on. */
  host: string;
  /** Decides who a connecting client is. */
  authenticator: Authenticator;
  logger: Logger;
  /** Disconnect a subscriber whose socket stays full this long (ms): one frozen client must not stall delivery to all. */
  drainTimeoutMs?: number;
  /**
   * MQTT over TLS with mutual authentication (8883 by default): clients must present a
   * certificate issued by `ca`; the device id is the certificate's subject CN.
   */
  tls?: { port: number; key: string; cert: string; ca: string };
  /** Admission control of device connections (connect-admission.ts); no limits by default. */
  admission?: AdmissionLimits;
  /**
   * Largest MQTT packet a client may send (its remaining length), in bytes; a larger one closes
   * the connection as soon as its header is read, before its body is buffered. 64 KiB by
   * default: well above any request the server answers (a shadow document, 8 KiB by default,
   * a job log of 16 KiB), whose oversize ones get their 413 on `.../rejected` below the limit.
   */
  maxPacketBytes?: number;
  /**
   * Distinct topic filters one device connection may hold (`mqtt.maxSubscriptions`); one more
   * is refused with SUBACK 0x80 (subscription-quota.ts). Operators are not limited.
   * 100 by default.
   */
  maxSubscriptions?: number;
}

/** Default of `maxSubscriptions`: the agent holds 3 to 5, an AWS IoT SDK client at most 50 (AWS IoT Core's own limit per connection). */
export const DEFAULT_MAX_SUBSCRIPTIONS = 100;

/** Default of `maxPacketBytes`. */
export const DEFAULT_MAX_PACKET_BYTES = 64 * 1024;

/**
 * Bytes of packets a connection may have waiting behind a QoS 2 message its session has no
 * place for (inbound-gate.ts), or four of its largest packets if more: some thousands of
 * requests, for a client that sends all its messages at once.
 */
export const MAX_QUEUED_BEHIND_QOS2_BYTES = 256 * 1024;

/** aedes's client, as far as the packet limit reaches into it: its mqtt-packet parser, which aedes gives a `client` back-reference (aedes 1.2, client.js). */
interface ParsingClient {
  id?: string;
  conn?: { remoteAddress?: string };
  _parser?: PacketParser;
}

/** mqtt-packet's parser, as far as the packet limit reaches into it. */
interface PacketParser {
  client?: ParsingClient;
  packet: { length: number };
  _parseLength(): boolean;
  _emitError(err: Error): void;
  on(event: 'packet', listener: (packet: { cmd: string; messageId?: number }) => void): void;
}

/**
 * A parser's `_parseLength` that refuses a packet longer than `max` once its length is read:
 * the parser's error closes the connection (aedes has no such limit: a device could otherwise
 * make the server buffer up to 256 MB per packet). One function per broker, set on every
 * connection's parser (`limitPacketSize`): a function made per connection costs ~312 bytes
 * under tsx, which keeps function names. It runs the parser's own `_parseLength`, its
 * prototype's, and names the connection through the parser's `client`, read only when refused.
 */
function packetSizeLimit(max: number, onRefused: (client: ParsingClient | undefined, length: number) => void): (this: PacketParser) => boolean {
  return function limitedParseLength(this: PacketParser) {
    const read = (Object.getPrototypeOf(this) as PacketParser)._parseLength.call(this);
    if (read && this.packet.length > max) {
      onRefused(this.client, this.packet.length);
      this._emitError(new Error(`packet of ${this.packet.length} bytes exceeds the limit of ${max}`));
      return false;
    }
    return read;
  };
}

/** Sets `limited` (from `packetSizeLimit`) as `client`'s parser's `_parseLength`; throws when an aedes or mqtt-packet upgrade changed what it reaches into. */
function limitPacketSize(client: ParsingClient, limited: (this: PacketParser) => boolean): void {
  const parser = client._parser;
  if (!parser || typeof parser._parseLength !== 'function') throw new UpdraftError('INTERNAL', 'aedes client without its mqtt-packet parser: the packet size limit cannot be applied');
  // the shared function calls the prototype's: a parser whose own differs would lose it
  if (Object.hasOwn(parser, '_parseLength') || parser.client !== client) throw new UpdraftError('INTERNAL', "aedes's mqtt-packet parser not as expected (its own _parseLength, or no client back-reference): the packet size limit cannot be applied");
  parser._parseLength = limited;
}

/**
 * Turns off mqtt-packet's cache of numbers, in the copy aedes writes its packets with. At the
 * first packet written, that cache builds a Buffer for each of the 65,536 two-byte numbers
 * (message ids, lengths) and keeps them for good: 6.5 MB of heap (65,536 objects, ~100 bytes
 * each), a tenth of the whole heap of a server with 3,000 devices connected, and 1.3 KB a
 * device in the bench's memory figure at 5,000 (the thirty-seventh session's heap snapshots).
 * Without it each number written is a two-byte slice of Node's buffer pool, made when
 * written: a few per packet, the packets of a turn leaving in one write anyway
 * (`coalesceWrites`). Also the mqtt.js clients of this process (same package), which write
 * little. Reached from aedes's own location, so it is the copy aedes uses.
 */
function dropMqttNumberCache(): void {
  const aedesRequire = createRequire(createRequire(import.meta.url).resolve('aedes'));
  const writeToStream = (aedesRequire('mqtt-packet') as { writeToStream?: ((...args: unknown[]) => boolean) & { cacheNumbers?: boolean } }).writeToStream;
  if (typeof writeToStream !== 'function' || writeToStream.cacheNumbers === undefined) throw new UpdraftError('INTERNAL', "aedes's mqtt-packet has no writeToStream.cacheNumbers: its cache of numbers cannot be turned off");
  writeToStream.cacheNumbers = false;
}

/**
 * Routes `mq`'s messages through a TopicMatcher (topic-matcher.ts), which keeps a connected
 * device's filters in a few hundred bytes instead of its qlobber trie's six Maps, the trie
 * kept for the other filters. Reaches into mqemitter 7's `_matcher`: guarded, an upgrade
 * that moved it refuses the start.
 */
function withTopicMatcher<E extends object>(mq: E): E {
  const m = mq as E & { _matcher?: Partial<Matcher<unknown>> };
  const trie = m._matcher;
  if (!trie || typeof trie.add !== 'function' || typeof trie.remove !== 'function' || typeof trie.match !== 'function') {
    throw new UpdraftError('INTERNAL', "mqemitter without its qlobber _matcher: the broker's routing table cannot be set");
  }
  m._matcher = new TopicMatcher(trie as Matcher<unknown>);
  return mq;
}

/**
 * aedes's session store, as far as the broker reaches into it: aedes-persistence's documented
 * interface (asyncPersistence.js), which aedes's own types leave out. Sessions are kept per
 * client id: `{ id }` names one.
 */
interface SessionStore {
  addSubscriptions(client: Client, subs: { topic: string }[]): Promise<void>;
  cleanSubscriptions(client: { id: string }): Promise<void>;
  outgoingClearMessageId(client: { id: string }, packet: PublishPacket): Promise<unknown>;
  outgoingEnqueueCombi(subs: { clientId: string }[], packet: PublishPacket): Promise<void>;
  createRetainedStreamCombi(patterns: string[]): Readable;
  incomingStorePacket(client: Client, packet: PublishPacket): Promise<void>;
  incomingGetPacket(client: Client, packet: PublishPacket): Promise<PublishPacket>;
  cleanIncoming(client: { id: string }): Promise<void>;
  delWill(client: { id: string }): Promise<unknown>;
}

/** aedes's session store. */
function sessionStoreOf(aedes: Aedes): SessionStore {
  return (aedes as unknown as { persistence: SessionStore }).persistence;
}

/** The subject CN of a TLS client certificate that the TLS layer verified, if any. */
function verifiedCommonName(conn: unknown): string | undefined {
  if (!(conn instanceof tls.TLSSocket) || !conn.authorized) return undefined;
  const cn = conn.getPeerCertificate()?.subject?.CN;
  return typeof cn === 'string' ? cn : undefined;
}

/** When the verified client certificate was issued (ms), from its notBefore; undefined without one. */
function certificateIssuedAt(conn: unknown): number | undefined {
  if (!(conn instanceof tls.TLSSocket) || !conn.authorized) return undefined;
  const from = Date.parse(conn.getPeerCertificate()?.valid_from ?? '');
  return Number.isFinite(from) ? from + SKEW_MS : undefined;
}

/** Whether `topic` is a request some handler answers; $aws/things/...: the AWS doors (aws/aws-bus.ts) pick their requests out. */
function isRequestTopic(topic: string): boolean {
  return parseDeviceRequestTopic(topic) !== undefined || topic.startsWith(AWS_THINGS_PREFIX);
}

/** aedes's id for this broker: it stamps every message published here (`brokerId`). */
const BROKER_ID = 'updraft';

/** aedes error with the CONNACK return code it should send. */
function connectError(code: 3 | 4 | 5, message: string): Error & { returnCode: number } {
  return Object.assign(new Error(message), { returnCode: code });
}

/** aedes hosted in this process, listening on TCP, exposed as a MessageBus. */
export class EmbeddedBroker implements MessageBus {
  private readonly opts: EmbeddedBrokerOptions;
  private aedes: Aedes | undefined;
  private server: net.Server | undefined;
  private tlsServer: tls.Server | undefined;
  private requestHandler: RequestHandler = () => {};
  private presenceHandler: (event: PresenceEvent) => void = () => {};
  private subscriptionHandler: (sender: Sender, filter: string) => void = () => {};
  /** Identity of each connection, decided at CONNECT. */
  private readonly senders = new WeakMap<Client, Sender>();
  /**
   * Counters for metrics and benchmarks: PUBLISH packets routed (from clients and from this
   * process), connections refused (by admission control, or at the open-file limit), and of
   * those the ones refused at the open-file limit.
   */
  readonly stats = { published: 0, refusedConnections: 0, refusedAtFileLimit: 0 };
  /** The listeners' connections refused at the process's open-file limit (util/open-file-limit.ts); set at start. */
  private fileLimit: { mqtt: FileLimitGate; mqtts: FileLimitGate } | undefined;
  private readonly admission: ConnectAdmission;
  /** Connections admitted and still authenticating: held, though aedes does not count them yet. */
  private authenticating = 0;
  /** Refusals are logged at most every 10 s, with their count: a reconnect storm must not flood the log. */
  private refusalLog = { at: -Infinity, count: 0 };
  /** Payloads of publishes refused by the ACL: acknowledged (MQTT-3.3.5-2 allows it), never routed. */
  private readonly dropped = new WeakSet<Buffer>();
  /** Every granted subscription, so answers nobody receives are skipped (`hasSubscribers`). */
  private readonly interest = new SubscriptionInterest();
  /** Access withdrawn from a device (`cutOff`), numbered in order, for connections still being admitted. */
  private readonly cuts = new Map<string, { seq: number; at: number; certificates: boolean }>();
  private cutSeq = 0;
  /** Sessions being ended (`endSession`), by client id: a connection under that id waits for its end before it is admitted. */
  private readonly endingSessions = new Map<string, Promise<void>>();
  /** The cut number current when each connection's authentication began. */
  private readonly admittedAt = new WeakMap<Client, number>();
  /** The listeners' error lines ('MQTT listener error'), one throttle per listener; closed at stop. */
  private readonly listenerErrorLogs: ThrottledLog[] = [];
  /** The 'MQTTS handshake refused' lines, one throttle per reason (`handshakeRefused`); closed at stop. */
  private readonly handshakeLogs = new Map<string, ThrottledLog>();
  /** Every connection the listeners accepted and that has not closed (raw TCP, TLS ones too): what stop() ends. */
  private readonly sockets = new Set<net.Socket>();
  /** A tracked connection closed (`this`, the socket: one listener for all, no closure per connection). */
  private readonly untrack = ((sockets: Set<net.Socket>) =>
    function (this: net.Socket): void {
      sockets.delete(this);
    })(this.sockets);
  /** Tracks an accepted connection until it closes. */
  private readonly track = (socket: net.Socket): void => {
    if (socket.destroyed) return;
    this.sockets.add(socket);
    socket.once('close', this.untrack);
  };
  /** Each connected device's connection (aedes's own table of clients is not part of its API). */
  private readonly deviceClients = new Map<string, Client>();
  /** Connections of the operator identity (tools on the operator token). */
  private readonly operatorClients = new Set<Client>();
  /** The filters each device connection holds, bounded. */
  private readonly quota: SubscriptionQuota<Client>;
  /** QoS 2 messages received and not yet released (PUBREL), per session: each request is handled once, and a session holds few. */
  private readonly qos2 = new Qos2Receipts();
  /** Empties aedes's store of the QoS 2 messages received under a client id, and their receipts (`storeHeldQos2Only`). */
  private cleanIncoming: (clientId: string) => Promise<void> = () => Promise.resolve();
  /** Connections closed for holding too many QoS 2 messages: logged once each. */
  private readonly qos2Refused = new WeakSet<Client>();
  /** Each message once per connection, in place of aedes's filter that lost messages (aedes#994). */
  private readonly forwardOnce = new ForwardOnce(BROKER_ID);
  /** The sessions' queues of outgoing QoS 1 and 2 messages, which hold no entry for a client id with none (session-queues.ts). */
  private readonly sessionQueues = new SessionQueues();
  /** Each connection's PUBACKs and PUBRECs in the order its PUBLISH packets came (ack-order.ts). */
  private readonly ackOrder = new AckOrder();
  /** PUBLISH packets of a connection wait while its session has no place for one more QoS 2 message awaiting its PUBREL, its PUBRELs read meanwhile (inbound-gate.ts). */
  private readonly inboundGate: InboundGate;
  /** Every connection's parser's `_parseLength`, with the packet size limit (`packetSizeLimit`). */
  private readonly limitedParseLength: (this: PacketParser) => boolean;

  constructor(opts: EmbeddedBrokerOptions) {
    this.opts = opts;
    this.quota = new SubscriptionQuota(opts.maxSubscriptions ?? DEFAULT_MAX_SUBSCRIPTIONS);
    this.admission = new ConnectAdmission(opts.admission ?? { maxConnections: 0, maxConnectRate: 0 });
    const maxPacket = opts.maxPacketBytes ?? DEFAULT_MAX_PACKET_BYTES;
    // the address read only for the line: read, a socket keeps it (an object and a string, ~90 bytes)
    this.limitedParseLength = packetSizeLimit(maxPacket, (client, length) =>
      opts.logger.warn('connection closed: packet over the size limit', { clientId: client?.id, bytes: length, limit: maxPacket, remote: client?.conn?.remoteAddress }),
    );
    // one gate, and one set of its functions, for all connections: nothing of it per connection
    // until one has a packet to hold back
    this.inboundGate = new InboundGate({
      mustWait: (client, p) => p.cmd === 'publish' && p.qos === 2 && p.messageId !== undefined && !this.qos2.hasRoom(client as Client, p.messageId, this.qos2Limit(this.senders.get(client as Client))),
      taken: (client, p) => {
        if (p.cmd !== 'pubrel') return;
        // once aedes has it: a PUBREL frees its packet id for a new message [MQTT-4.3.3-2]
        this.qos2.release(client as Client, p.messageId!);
        this.inboundGate.drain(client);
      },
      maxQueuedBytes: Math.max(MAX_QUEUED_BEHIND_QOS2_BYTES, 4 * (opts.maxPacketBytes ?? DEFAULT_MAX_PACKET_BYTES)),
      overflow: (client, bytes) => {
        const c = client as Client;
        opts.logger.warn('connection closed: too many packets sent behind QoS 2 messages awaiting their PUBREL', { clientId: c.id, queuedBytes: bytes, awaitingRelease: this.qos2Limit(this.senders.get(c)) });
        c.emit('error', new Error('too many packets sent behind QoS 2 messages awaiting their PUBREL'));
      },
    });
  }

  /** The TCP port actually listened on (useful with port 0). */
  get port(): number {
    const addr = this.server?.address();
    return typeof addr === 'object' && addr ? addr.port : this.opts.port;
  }

  /** The MQTTS port actually listened on, or undefined without TLS. */
  get tlsPort(): number | undefined {
    const addr = this.tlsServer?.address();
    return typeof addr === 'object' && addr ? addr.port : undefined;
  }

  /** Serves `material` on the MQTTS listener from its next handshake on (a renewed server certificate: server/server-tls-renewal.ts); open connections keep theirs. */
  setTls(material: { key: string; cert: string }): void {
    const t = this.opts.tls;
    if (t && this.tlsServer) this.tlsServer.setSecureContext({ key: material.key, cert: material.cert, ca: t.ca });
  }

  /** Number of connected MQTT clients. */
  get connectedClients(): number {
    return this.aedes?.connectedClients ?? 0;
  }

  /** Client ids whose session holds outgoing QoS 1 or 2 messages not yet acknowledged (session-queues.ts). */
  get queuedSessions(): number {
    return this.sessionQueues.size;
  }

  onRequest(handler: RequestHandler): void {
    this.requestHandler = handler;
  }

  /**
   * The address a device's current MQTT connection comes from (`downloads.ipBinding mqtt`);
   * undefined while it is not connected. An IPv4 client of a dual-stack listener is named
   * as IPv4 (`::ffff:` dropped), as the download route compares it.
   */
  addressOf(deviceId: string): string | undefined {
    const address = (this.deviceClients.get(deviceId)?.conn as { remoteAddress?: string } | undefined)?.remoteAddress;
    return address?.startsWith('::ffff:') ? address.slice(7) : address;
  }

  onPresence(handler: (event: PresenceEvent) => void): void {
    this.presenceHandler = handler;
  }

  /** Sets the listener for granted subscriptions (the AWS doors learn which things use `$aws` topics). */
  onSubscription(handler: (sender: Sender, filter: string) => void): void {
    this.subscriptionHandler = handler;
  }

  private noteRefusal(why: Refusal): void {
    this.stats.refusedConnections++;
    this.refusalLog.count++;
    const now = performance.now();
    if (now - this.refusalLog.at < 10_000) return;
    const limits = this.opts.admission!;
    const limit = why === 'rate' ? `${limits.maxConnectRate} new connections a second` : `${limits.maxConnections} connections`;
    const since = Number.isFinite(this.refusalLog.at) ? { sinceMs: Math.round(now - this.refusalLog.at) } : {};
    this.opts.logger.warn('connections refused (CONNACK 3): the broker is at its admission limit', { limit, refused: this.refusalLog.count, ...since });
    this.refusalLog = { at: now, count: 0 };
  }

  /**
   * A persistent session (`clean: false`) keeps a device's granted filters only. aedes stores
   * the whole SUBSCRIBE packet's filter list once any filter of it is granted, refused ones
   * included, and keeps it after the connection ends: a QA script stored 90,000 refused
   * filters (another device's topics, or past `mqtt.maxSubscriptions`) under one device's
   * session, 41 MB of server memory that no limit bounded and that would be authorized again
   * at each reconnect. Restored filters are still authorized (and counted) again.
   */
  private storeGrantedOnly(aedes: Aedes): void {
    const persistence = sessionStoreOf(aedes);
    const add = persistence.addSubscriptions.bind(persistence);
    persistence.addSubscriptions = (client, subs) => {
      const sender = this.senders.get(client);
      if (sender && sender.kind !== 'device') return add(client, subs); // operators are not limited
      // each granted filter of the packet stores the list once it is granted, so a filter
      // granted after another's store is in its own store's list
      const granted = sender ? subs.filter((s) => this.quota.holds(client, s.topic)) : [];
      return add(client, granted);
    };
  }

  /**
   * A clean session begins by emptying the stored subscriptions of its id (aedes's fetchSubs
   * calls its persistence's cleanSubscriptions, after authentication) and emits no
   * `unsubscribe` for them, so the interest forgets them there: a device that left a
   * persistent session and came back with a clean one stayed counted as subscribed to the
   * old session's filters for good, and answers nobody received were built and sent.
   */
  private forgetCleanedSubscriptions(aedes: Aedes): void {
    const persistence = sessionStoreOf(aedes);
    const clean = persistence.cleanSubscriptions.bind(persistence);
    persistence.cleanSubscriptions = (client) => {
      this.interest.forget(client.id);
      return clean(client);
    };
  }

  /**
   * aedes stores a QoS 2 message only while its session holds it (Qos2Receipts), so what it
   * keeps awaiting PUBREL is bounded as the session is: it keeps a message per client id, not
   * per connection, and a message handled after its connection was taken over (by a clean
   * session, whose connect emptied the id's store) would otherwise land in the store after
   * the wipe, uncounted. And when aedes empties an id's store the session's receipts go
   * with it: the one place they end. aedes does it as a clean session begins (once the
   * connection of the id it takes over is closed: lib/handlers/connect.js) and as one ends
   * (lib/client.js), [MQTT-3.1.2-6]; `endSession` too.
   *
   * Throws, having changed nothing, when the persistence has no cleanIncoming. No option
   * passes a persistence, and aedes's default (aedes-persistence's memory store) has one:
   * the check guards an upgrade of either, and `start` closes aedes before the error leaves it.
   */
  private storeHeldQos2Only(aedes: Aedes): void {
    const persistence = sessionStoreOf(aedes);
    // aedes feature-detects cleanIncoming; without it no receipt of a clean session would ever go
    if (typeof persistence.cleanIncoming !== 'function') throw new UpdraftError('INTERNAL', "aedes's persistence has no cleanIncoming: the QoS 2 receipts of clean sessions would never end");
    const store = persistence.incomingStorePacket.bind(persistence);
    persistence.incomingStorePacket = (client, packet) => (this.qos2.holds(client, packet.messageId!) ? store(client, packet) : Promise.resolve());
    const clean = persistence.cleanIncoming.bind(persistence);
    this.cleanIncoming = (clientId) => {
      this.qos2.discard(clientId);
      return clean({ id: clientId });
    };
    // aedes also calls it as a clean CONNECT it refused closes (lib/client.js checks no
    // authentication): anyone could then end, under a device's id and without its secret,
    // the QoS 2 messages its session awaits the PUBREL of, and a copy of one was handled
    // again. Only a connection that authenticated ends a session
    persistence.cleanIncoming = (client) => (this.senders.has(client as Client) ? this.cleanIncoming(client.id) : Promise.resolve());
  }

  /**
   * A copy of a QoS 2 message aedes holds (found in its store) is acknowledged in its turn
   * (ack-order.ts): aedes writes its PUBREC as its store's lookup resolves, a few promise
   * callbacks on (so the next one waits for a turn of the event loop).
   */
  private orderStoredCopies(aedes: Aedes): void {
    const persistence = sessionStoreOf(aedes);
    if (typeof persistence.incomingGetPacket !== 'function') throw new UpdraftError('INTERNAL', "aedes's persistence has no incomingGetPacket: the PUBRECs of copies of QoS 2 messages cannot be ordered");
    const get = persistence.incomingGetPacket.bind(persistence);
    persistence.incomingGetPacket = (client, packet) => {
      const found = get(client, packet);
      if (!this.ackOrder.waiting(packet)) return found; // a PUBREL's lookup, or a new message's
      return found.then((stored) => new Promise((resolve) => this.ackOrder.release(packet, (written) => (resolve(stored), setImmediate(written)))));
    };
  }

  /** QoS 2 messages a session of `sender` may hold awaiting their PUBREL. */
  private qos2Limit(sender: Sender | undefined): number {
    return sender?.kind === 'operator' ? MAX_OPERATOR_QOS2_AWAITING_RELEASE : MAX_DEVICE_QOS2_AWAITING_RELEASE;
  }

  /**
   * Takes a QoS 2 PUBLISH into its session, or refuses it: false when the session holds as
   * many awaiting their PUBREL as it may (then the connection is closed).
   */
  private admitQos2(client: Client, sender: Sender | undefined, messageId: number): boolean {
    const limit = this.qos2Limit(sender);
    if (this.qos2.admit(client, messageId, limit)) return true;
    if (!this.qos2Refused.has(client)) {
      this.qos2Refused.add(client);
      this.opts.logger.warn('connection closed: too many QoS 2 messages awaiting their PUBREL', { clientId: client.id, limit });
    }
    return false;
  }

  /**
   * Sets up a connection aedes just took (`client`, from `aedes.handle`): aedes's duplicate
   * filter off (forward-once.ts), the packet size limit, the inbound gate. Throws, as the
   * guards of these do, when an aedes upgrade changed the internals they reach into.
   */
  private prepareConnection(client: Client): void {
    this.forwardOnce.adopt(client);
    limitPacketSize(client as unknown as ParsingClient, this.limitedParseLength);
    // PUBLISH packets wait while the session has no place for one more QoS 2 message
    // awaiting its PUBREL, its PUBRELs read meanwhile (inbound-gate.ts)
    this.inboundGate.adopt(client);
  }

  /**
   * Sets up aedes clients, over streams that carry nothing, as each connection will be
   * (`prepareConnection`), then closes them: an aedes upgrade that changed what the setup
   * reaches into (the parser's one 'packet' listener the inbound gate takes over, its
   * duplicates record, its deliver functions) refuses the start here, instead of failing at
   * the first device's connection. Two clients: the gate's listener stands in for aedes's on
   * every parser, which must be one function for all. The clients never connect: aedes
   * counts, lists and announces none of them.
   *
   * Also what a connection's first SUBSCRIBE and its socket meet later: aedes's subscription
   * records, whose class ForwardOnce readies from a record made here (an aedes whose records
   * differ failed at the first SUBSCRIBE, while serving), and Node's sockets, given
   * `coalesceWrites`' shared write as each connection's is (a Node whose sockets have their
   * own write or cork closed every connection as it came).
   */
  private async checkConnections(aedes: Aedes): Promise<void> {
    // a client of aedes's class, made only for its class, readied for ForwardOnce.adopt
    const nothing = new Duplex({ read() {}, write: (_chunk, _encoding, callback) => callback() });
    const first = aedes.handle(nothing);
    first.close();
    nothing.destroy();
    ForwardOnce.prepare(Object.getPrototypeOf(first) as object);
    for (let i = 0; i < 2; i++) {
      const nothing = new Duplex({ read() {}, write: (_chunk, _encoding, callback) => callback() });
      const probe = aedes.handle(nothing);
      try {
        this.prepareConnection(probe);
      } finally {
        probe.close();
        nothing.destroy();
      }
    }
    // sockets of the classes the MQTT and MQTTS servers make, unconnected
    const plain = new net.Socket();
    const under = new net.Socket();
    const secure = new tls.TLSSocket(under, { isServer: true });
    try {
      coalesceWrites(plain);
      coalesceWrites(secure);
    } finally {
      for (const socket of [secure, under, plain]) socket.destroy();
    }
    // a subscription record is made only by aedes's SUBSCRIBE, which this broker's
    // authorizeSubscribe refuses a client without a sender: the probe's is an aedes of its
    // own, with aedes's defaults (same module, same classes), closed at once
    const spare = await Aedes.createBroker({ id: `${BROKER_ID}-check` });
    const idle = new Duplex({ read() {}, write: (_chunk, _encoding, callback) => callback() });
    try {
      const probe = spare.handle(idle);
      try {
        this.forwardOnce.prepareSubscriptions(probe);
      } finally {
        probe.close();
      }
    } finally {
      idle.destroy();
      await new Promise<void>((resolve) => spare.close(() => resolve()));
    }
  }

  async start(): Promise<void> {
    const log = this.opts.logger;
    dropMqttNumberCache();
    const aedes = await Aedes.createBroker({
      id: BROKER_ID,
      // mqemitter with a concurrency limit queues messages once that many deliveries are
      // pending (slow subscribers), then drains the queue recursively: every queued message
      // nobody subscribes to (aedes's $SYS notices when thousands of devices disconnect)
      // completes synchronously and starts the next one, until the stack overflows and the
      // process dies (seen in a 30,000-device cycling rollout; mqemitter#204, aedes#193).
      // Without the limit nothing is queued; slow subscribers are still cut off by
      // drainTimeout, and device requests are bounded by the replica's own queue.
      mq: withTopicMatcher(mqemitter({ concurrency: 0, matchEmptyLevels: true })),
      maxClientsIdLength: 128,
      // above any session's limit of QoS 2 messages awaiting their PUBREL (Qos2Receipts), so
      // that ours, which makes a PUBLISH wait for a place, is met first: aedes's closes the
      // connection, and frees a place a little later than ours (qos2-receipts.ts)
      maxInflightInbound: AEDES_MAX_INFLIGHT_INBOUND,
      drainTimeout: this.opts.drainTimeoutMs ?? 30_000,
      authenticate: (client, username, password, done) => {
        // admission first, before any work on the credentials: the operator's own
        // connections are not devices and are never turned away (their token is still
        // checked), though they count among the connections held
        const refusal = username === OPERATOR_USERNAME ? undefined : this.admission.admit(this.connectedClients + this.authenticating);
        if (refusal) {
          this.noteRefusal(refusal);
          return done(connectError(3, 'Server unavailable'), false);
        }
        this.authenticating++;
        this.admittedAt.set(client, this.cutSeq);
        const credentials = { clientId: client.id, username: username ?? undefined, password: password ?? undefined, certificateCommonName: verifiedCommonName(client.conn), certificateIssuedAt: certificateIssuedAt(client.conn) };
        const ending = this.endingSessions.get(client.id);
        (ending ? ending.then(() => this.opts.authenticator.authenticate(credentials)) : this.opts.authenticator.authenticate(credentials))
          .then((sender) => {
            if (!sender) {
              log.warn('connection refused: bad credentials', { clientId: client.id });
              return done(connectError(4, 'Bad user name or password'), false);
            }
            if (this.wasCut(client, sender)) {
              log.warn('connection refused: access withdrawn while it connected', { clientId: client.id });
              return done(connectError(4, 'Bad user name or password'), false);
            }
            this.senders.set(client, sender);
            done(null, true);
          })
          .catch((err: unknown) => {
            // the credentials could not be checked (the store did not answer: a database
            // restarting), which says nothing of them: 3, Server unavailable, which clients
            // retry, not 5, Not authorized, which says they may not connect (a simulated fleet
            // gave up devices that reconnected during a store outage of a few seconds: review)
            log.error('authentication failed: the credentials could not be checked', { clientId: client.id, error: String(err) });
            done(connectError(3, 'Server unavailable'), false);
          })
          .finally(() => this.authenticating--);
      },
      authorizePublish: (client, packet, letThrough) => {
        // acknowledgements in the order received (ack-order.ts): aedes writes a QoS 1 PUBLISH's
        // PUBACK as `done` lets it through, a QoS 2 one's PUBREC later (`published`); a refusal
        // closes the connection, after the acknowledgements of the packets before it
        if (client && packet.qos > 0 && packet.messageId !== undefined) this.ackOrder.enter(client, packet);
        const done = (err?: Error | null): void => {
          if (packet.qos === 2 && !err) return letThrough(null);
          this.ackOrder.release(packet, (written) => {
            letThrough(err);
            written();
          });
        };
        // [MQTT-1.5.3-2]: a topic name with U+0000 closes the connection (aedes took it)
        if (client && packet.topic.includes('\u0000')) {
          log.warn('connection closed: U+0000 in a topic name', { clientId: client.id });
          return done(new Error('U+0000 in a topic name'));
        }
        const sender = client ? this.senders.get(client) : { kind: 'internal' as const, id: '' };
        // (a Will has no packet id: it is no message received, and aedes does not store it)
        if (client && packet.qos === 2 && packet.messageId !== undefined) {
          // [MQTT-4.3.3-2]: a QoS 2 message sent again before its PUBREL (a retransmission
          // whose PUBREC was lost, here or, in a persistent session, over an earlier
          // connection) is acknowledged and not delivered again. aedes checks that only after
          // this hook, where requests are handed over: each copy was applied (the QA pass saw
          // two update/accepted, or a 409 for a conditional update that had succeeded). The
          // copy waits for the first's handling, so its PUBREC too says the request is handled,
          // and goes to no subscriber.
          const earlier = this.qos2.earlier(client, packet.messageId!);
          if (earlier) {
            this.discard(packet);
            void earlier.then(() => done(null));
            return;
          }
          // every QoS 2 message aedes acknowledges, whatever its topic (a presence, one the ACL
          // drops), stays in its store until the PUBREL: a session holds a few at most, over
          // all its connections. One more waits for a place (inbound-gate.ts); one sent with
          // the CONNECT, before the CONNACK, passes the wait and closes the connection: MQTT
          // 3.1.1 has no way to say "not now", and evicting one would break exactly-once.
          if (!this.admitQos2(client, sender, packet.messageId!)) return done(new Error('too many QoS 2 messages awaiting their PUBREL'));
        }
        if (!sender || !mayPublish(sender, packet.topic)) {
          log.warn('publish dropped: topic not allowed for this client', { clientId: client?.id, topic: packet.topic });
          return done(this.discard(packet));
        }
        // nothing of a connection whose device was cut off (revoked, deleted, a new secret)
        // after it was admitted: neither its Will, which aedes publishes as it closes the
        // connection, nor a request still in flight. A Will wrote the reported state of a
        // revoked device, and after a deletion was inherited by the id registered again
        if (client && this.wasCut(client, sender)) {
          log.info('publish dropped: the device was cut off', { deviceId: sender.id, topic: packet.topic });
          return done(this.discard(packet));
        }
        // the agent's presence (and its Will) is for external brokers, which do not tell who
        // connects (protocol/presence.ts); this broker sees connections itself (a fleet's
        // retained messages would only hold memory)
        if (sender.kind === 'device' && parsePresenceTopic(packet.topic) !== undefined) return done(this.discard(packet));
        // a device's messages are requests, answered once: none is kept for later subscribers
        // (a retained one would be held in memory, and handed to whoever subscribes next)
        if (sender.kind === 'device') packet.retain = false;
        if (!client || !isRequestTopic(packet.topic)) return done(null);
        const handled = this.route(packet, sender);
        if (packet.qos === 2) this.qos2.handling(client, packet.messageId!, handled);
        // A request's PUBACK waits until it is handled: aedes writes it once this callback
        // runs. So a device's report is acknowledged once the replica has recorded it
        // (committed) and handed its answers to aedes, and the PUBACK leaves in the same
        // write as the answers (`coalesceWrites`; just ahead of them) instead of a write of
        // its own: two system calls fewer per device updated on the server, two reads fewer
        // on the device (strace of 500 devices updated: 3 writes to each device's
        // connection instead of 5). A request still being handled holds the client's next
        // packets (aedes reads a connection's next packets once those of its last read are
        // handled), which orders a device's requests and keeps a flooding client to its own
        // pace. `handled` never rejects.
        void handled.then(() => done(null));
      },
      authorizeSubscribe: (client, sub, done) => {
        // [MQTT-1.5.3-2], as for a topic name: the connection is closed, no SUBACK
        if (sub.topic.includes('\u0000')) {
          log.warn('connection closed: U+0000 in a topic filter', { clientId: client.id });
          return done(new Error('U+0000 in a topic filter'), null);
        }
        const sender = this.senders.get(client);
        if (!sender || !maySubscribe(sender, sub.topic)) {
          log.warn('subscription refused: topic not allowed for this client', { clientId: client.id, topic: sub.topic });
          return done(null, null); // SUBACK 0x80 for this filter, the connection stays
        }
        const refusal = sender.kind === 'device' ? this.quota.admit(client, sub.topic) : undefined;
        if (refusal) {
          if (this.quota.firstRefusal(client)) {
            log.warn(`subscription refused: ${refusal} (further refusals on this connection are not logged)`, { clientId: client.id, limit: this.opts.maxSubscriptions ?? DEFAULT_MAX_SUBSCRIPTIONS, topic: sub.topic.slice(0, 200) });
          }
          return done(null, null);
        }
        this.subscriptionHandler(sender, sub.topic);
        done(null, sub);
      },
      // a copy of the message just forwarded to this connection (overlapping subscriptions) is
      // not sent again; aedes's own filter, which also dropped messages that had overtaken
      // each other, is off (forward-once.ts)
      authorizeForward: (client, packet) => this.forwardOnce.authorize(client, packet, this.dropped.has(packet.payload as Buffer)),
      published: (packet, client, done) => {
        // aedes writes a QoS 2 PUBLISH's PUBREC as this lets it go: in its turn (ack-order.ts)
        this.ackOrder.release(packet, (written) => {
          done(null);
          written();
        });
        // MQTT messages, not aedes's own $SYS notices (a client came or went, subscribed): they
        // go to no device, and counting them inflated the bench's messages per update; nor
        // the messages dropped above, which went nowhere either
        if (!packet.topic.startsWith('$SYS/') && !this.dropped.has(packet.payload as Buffer)) this.stats.published++;
      },
    });
    try {
      this.storeGrantedOnly(aedes);
      this.storeHeldQos2Only(aedes);
      this.orderStoredCopies(aedes);
      this.forgetCleanedSubscriptions(aedes);
      // the queues themselves, bounded by the messages in them (session-queues.ts); first,
      // for the wrappers of their calls to hand on to
      this.sessionQueues.adopt(sessionStoreOf(aedes));
      // one copy of each message per persistent session's queue (forward-once.ts)
      this.forwardOnce.adoptQueue(sessionStoreOf(aedes), (packet) => this.dropped.has(packet.payload as Buffer));
      // each retained message once on a SUBSCRIBE whose filters overlap (forward-once.ts)
      this.forwardOnce.adoptRetained(sessionStoreOf(aedes));
      await this.checkConnections(aedes);
    } catch (err) {
      // createBroker started aedes's heartbeat and Will timers: they would keep the process alive
      await new Promise<void>((resolve) => aedes.close(() => resolve()));
      throw err;
    }
    aedes.on('clientReady', (client) => {
      const s = this.senders.get(client);
      // access withdrawn after its authentication, before aedes listed it among its clients
      if (s && this.wasCut(client, s)) {
        log.warn('connection closed: access withdrawn while it connected', { clientId: client.id });
        client.close();
        return;
      }
      if (s?.kind === 'device') {
        this.deviceClients.set(s.id, client);
        this.presenceHandler({ deviceId: s.id, online: true });
      } else if (s?.kind === 'operator') {
        this.operatorClients.add(client);
      }
    });
    aedes.on('clientDisconnect', (client) => {
      const s = this.senders.get(client);
      if (s?.kind === 'operator') this.operatorClients.delete(client);
      // only a connection that came online goes offline (not one closed at once by `cutOff`);
      // a connection taken over by a newer one of the same device leaves before that one comes
      if (s?.kind !== 'device' || this.deviceClients.get(s.id) !== client) return;
      this.deviceClients.delete(s.id);
      this.presenceHandler({ deviceId: s.id, online: false });
    });
    aedes.on('subscribe', (subs, client) => {
      // a refused filter comes back with qos 128 (SUBACK failure), which the types do not admit
      for (const s of subs) if ((s.qos as number) !== 128) this.interest.add(client.id, s.topic);
    });
    // also sent by aedes for every filter of a clean session when it ends
    aedes.on('unsubscribe', (filters, client) => {
      for (const f of filters) {
        this.interest.remove(client.id, f);
        this.quota.release(client, f);
      }
    });
    aedes.on('clientError', (client, err) => log.debug('client error', { clientId: client.id, error: err.message }));
    aedes.on('connectionError', (_client, err) => log.debug('connection error', { error: err.message }));
    this.aedes = aedes;

    // at the open-file limit the kernel refuses accept() and Node says nothing: refused here
    // first, while a few files are left, with a line and a count (util/open-file-limit.ts)
    // twice the reserve of the HTTP listener's: the operator's API stays reachable when devices take the rest
    const gates = { mqtt: new FileLimitGate({ logger: log, listener: 'mqtt', reserveFactor: 2 }), mqtts: new FileLimitGate({ logger: log, listener: 'mqtts', reserveFactor: 2 }) };
    this.fileLimit = gates;
    const atLimit = (gate: FileLimitGate) => (socket: net.Socket) => {
      if (gate.admit(socket)) return;
      this.stats.refusedConnections++;
      this.stats.refusedAtFileLimit++;
    };
    const handle = (socket: net.Socket) => {
      if (socket.destroyed) return; // refused at the open-file limit
      let client: Client | undefined;
      try {
        client = aedes.handle(coalesceWrites(socket));
        this.prepareConnection(client);
      } catch (err) {
        // not out of the connection handler, where it would end the process: `start` checked
        // a client made the same way (`checkConnections`), so this is not expected
        log.error('connection closed: aedes client not as expected', { remote: socket.remoteAddress, error: String(err) });
        client?.close();
        socket.destroy();
      }
    };
    const server = net.createServer(handle);
    server.prependListener('connection', atLimit(gates.mqtt));
    server.on('connection', this.track);
    this.server = server;
    await this.listen(server, this.opts.port, 'mqtt-port').catch(async (err: unknown) => {
      // as the TLS port's below: aedes closed (awaited) and the broker left unstarted, not half
      await this.stop();
      throw err;
    });
    const t = this.opts.tls;
    if (t) {
      // requestCert + rejectUnauthorized: a client without a certificate from our CA never reaches CONNECT
      const secure = tls.createServer({ key: t.key, cert: t.cert, ca: t.ca, requestCert: true, rejectUnauthorized: true }, handle);
      // before TLS takes the socket; its handshake then ends 'socket hang up', which is not logged
      secure.prependListener('connection', atLimit(gates.mqtts));
      // read (and kept by net.Socket) while the socket is open: a handshake refused for the
      // client's certificate is reported after the TLS socket was destroyed, without an address
      secure.on('connection', rememberPeer);
      secure.on('connection', this.track);
      secure.on('tlsClientError', (err, tlsSocket) => {
        const raw = (tlsSocket as { _parent?: net.Socket })._parent;
        if (gates.mqtts.refusedSocket(raw)) return;
        this.handshakeRefused(err, tlsSocket, raw?.remoteAddress ?? '');
      });
      this.tlsServer = secure;
      await this.listen(secure, t.port, 'mqtt-tls-port').catch(async (err: unknown) => {
        await this.stop();
        throw err;
      });
    }
  }

  /** Listens on `port`; a later error of the listening server is logged (listener: mqtt or mqtts), not swallowed. */
  private async listen(server: net.Server, port: number, flag: string): Promise<void> {
    // a fleet reconnecting at once overflows the default backlog (511): SYNs dropped cost seconds
    await listenOn(server, { port, host: this.opts.host, backlog: 4096 }, (err) =>
      err.code === 'EADDRINUSE'
        ? new UpdraftError('PORT_IN_USE', `MQTT port ${port} on ${this.opts.host} is already in use; stop what uses it or pick another port with --${flag}`)
        : new UpdraftError('CONFIG', `cannot listen for MQTT on ${this.opts.host}:${port}: ${err.message}`, { cause: err }),
    );
    const listener = flag === 'mqtt-tls-port' ? 'mqtts' : 'mqtt';
    // an accept error repeats per connection attempt (EMFILE at the open-file limit): the
    // first at once, then one line per 30 s with the count (log-throttle.ts), per listener
    const log = new ThrottledLog(this.opts.logger, 30_000, Date.now, ['listener', 'code']);
    this.listenerErrorLogs.push(log);
    server.on('error', (err: NodeJS.ErrnoException) => log.error('MQTT listener error', { listener, error: err.message, ...(err.code ? { code: err.code } : {}) }));
  }

  /**
   * Logs a TLS handshake the MQTTS listener refused: why (the verification error of the
   * client's certificate when there is one: Node destroys the socket and reports only
   * 'socket hang up'), from where, and what it likely means. A device refused retries on
   * its own: one line per reason and minute, the others counted (21 lines a minute for 6
   * devices with certificates of a dropped CA, QA 2026-12-06). Nothing of the certificate.
   */
  private handshakeRefused(err: Error & { code?: string }, tlsSocket: tls.TLSSocket, from: string): void {
    // a code such as 'CERT_HAS_EXPIRED' (typed Error by @types/node, a string in Node 20)
    const authz: unknown = tlsSocket.authorizationError;
    const verifyError = typeof authz === 'string' ? authz : authz instanceof Error ? authz.message : '';
    const reason = verifyError || err.code || err.message;
    const hint = HANDSHAKE_HINTS[reason] ?? (!verifyError && err.code === 'ECONNRESET' ? 'the client closed the connection during the handshake (does it trust the server certificate?)' : undefined);
    // reasons are OpenSSL's codes, a bounded set; a message without one shares a throttle
    const key = this.handshakeLogs.has(reason) || this.handshakeLogs.size < 32 ? reason : '';
    let throttle = this.handshakeLogs.get(key);
    if (!throttle) this.handshakeLogs.set(key, (throttle = new ThrottledLog(this.opts.logger, 60_000, Date.now, ['reason', 'hint', 'lastFrom'])));
    throttle.warn('MQTTS handshake refused', { reason, ...(hint ? { hint } : {}), lastFrom: from });
  }

  /** Marks a publish to go nowhere: not forwarded (authorizeForward), not retained, not counted. */
  private discard(packet: PublishPacket): null {
    this.dropped.add(packet.payload as Buffer);
    packet.retain = false;
    return null;
  }

  /** Hands a request (a message on a request topic) to its handler; resolves (never rejects) once it is handled. */
  private route(packet: PublishPacket, sender: Sender): Promise<void> {
    try {
      return Promise.resolve(this.requestHandler({ topic: packet.topic, payload: packet.payload as Buffer, sender })).catch(() => undefined);
    } catch {
      return Promise.resolve(); // handlers do not throw; a broken one must not stall the connection
    }
  }

  /**
   * Closes the connections of a device whose access was withdrawn (revoked, or its secret
   * replaced): the registry refuses it at its next CONNECT, and a connection it already
   * holds must not outlive that (a compromised device would otherwise keep its session
   * until it chose to leave). With `certificates: false` (a new secret) a connection
   * authenticated by a client certificate stays: the secret was not what let it in. A
   * connection still being admitted is refused too, with CONNACK 4, or closed as soon as
   * aedes lists it. Returns the number of connections closed.
   *
   * With `certificates: true` (a revocation, which is also the first step of a deletion:
   * fleet/decommission.ts) the device's persistent session ends too (`endSession`): a
   * deleted device's id registered again is a new device, which must not resume the old
   * one's subscriptions and queued messages; and a revoked device's session was made by
   * whoever held its access, and filled while it had none. A new secret keeps it: the same
   * device reconnects with it.
   */
  cutOff(deviceId: string, options: { certificates: boolean }): number {
    const now = performance.now();
    // what was cut over a minute ago no longer concerns a connection being admitted (aedes
    // gives a CONNECT 30 s); revocations are rare, so this map stays small
    for (const [id, c] of this.cuts) if (now - c.at > 60_000) this.cuts.delete(id);
    this.cuts.set(deviceId, { seq: ++this.cutSeq, at: now, certificates: options.certificates });
    const client = this.deviceClients.get(deviceId);
    const closing = client && (options.certificates || verifiedCommonName(client.conn) === undefined) ? client : undefined;
    if (closing) {
      this.opts.logger.info('connection closed: access withdrawn', { deviceId });
      closing.close();
    }
    // after the close: aedes keeps a persistent session's state as its connection ends
    if (options.certificates) {
      // a revocation answers before the session has ended: a connection under the id (the
      // device reinstated at once) waits for it, or its new Will and QoS 2 receipts could go
      // with the old session's
      const ending: Promise<void> = this.endSession(deviceId)
        .catch((err: unknown) => this.opts.logger.error('the session of a device cut off was not ended', { deviceId, error: String(err) }))
        .finally(() => {
          if (this.endingSessions.get(deviceId) === ending) this.endingSessions.delete(deviceId);
        });
      this.endingSessions.set(deviceId, ending);
    }
    return closing ? 1 : 0;
  }

  /**
   * Ends the persistent session (`clean: false`) held under a client id, as a clean session
   * would ([MQTT-3.1.2-6]): its subscriptions, the messages queued for it, the QoS 2 messages
   * it sent awaiting their PUBREL (and their receipts), its Will. aedes has no call for it,
   * and keeps a session for as long as it runs (in memory): its persistence's own calls do it,
   * and the queue's own (its client id goes with it).
   */
  private async endSession(clientId: string): Promise<void> {
    const aedes = this.aedes;
    if (!aedes) return;
    const store = sessionStoreOf(aedes);
    const session = { id: clientId };
    await store.cleanSubscriptions(session); // the interest forgets them too (forgetCleanedSubscriptions)
    // a message matched against the subscriptions just before they went is queued a few
    // promise callbacks later (aedes's enqueueOffline): past this turn, nothing more comes
    await new Promise((resolve) => setImmediate(resolve));
    this.sessionQueues.end(clientId); // its entry too, not only the messages (session-queues.ts)
    await this.cleanIncoming(clientId); // its receipts too (storeHeldQos2Only)
    await store.delWill(session);
  }

  /** Closes every connection of the operator identity (its token was replaced); returns how many. */
  cutOffOperators(): number {
    const clients = [...this.operatorClients];
    this.operatorClients.clear();
    for (const c of clients) c.close();
    if (clients.length > 0) this.opts.logger.info('operator connections closed: the operator token was replaced', { connections: clients.length });
    return clients.length;
  }

  /** Whether access was withdrawn from this connection's device after its authentication began. */
  private wasCut(client: Client, sender: Sender): boolean {
    if (sender.kind !== 'device') return false;
    const cut = this.cuts.get(sender.id);
    if (!cut || cut.seq <= (this.admittedAt.get(client) ?? Infinity)) return false;
    return cut.certificates || verifiedCommonName(client.conn) === undefined;
  }

  /** True when a subscription of a connected client (or a persistent session) matches `topic`. */
  hasSubscribers(topic: string): boolean {
    return this.interest.has(topic);
  }

  publish(topic: string, payload: string | Buffer, qos: 0 | 1 = 1): Promise<void> {
    const aedes = this.aedes;
    if (!aedes) return Promise.reject(new UpdraftError('INTERNAL', 'broker is not started'));
    return new Promise((resolve, reject) => {
      aedes.publish(
        { cmd: 'publish', topic, payload: typeof payload === 'string' ? Buffer.from(payload) : payload, qos, retain: false, dup: false },
        (err) => (err ? reject(err) : resolve()),
      );
    });
  }

  async stop(): Promise<void> {
    const server = this.server;
    const tlsServer = this.tlsServer;
    const aedes = this.aedes;
    this.server = undefined;
    this.tlsServer = undefined;
    this.aedes = undefined;
    // no new connection; the listeners' close completes once every accepted one has closed
    const closed = [server, tlsServer].map((s) => (s?.listening ? new Promise<void>((resolve) => s.close(() => resolve())) : Promise.resolve()));
    if (aedes) await new Promise<void>((resolve) => aedes.close(() => resolve()));
    // aedes closes the clients that finished their CONNECT; one that has not (no CONNECT sent
    // yet, its login still being checked, a TLS handshake under way) held the stop until aedes's
    // 30 s connect timeout, or for good once aedes had closed: a SIGTERM under a fleet hit the
    // 30 s stop limit and exited 1 (soak, 2026-12-06: 2 stops of 5 with 3,000 devices)
    for (const socket of this.sockets) socket.destroy();
    this.sockets.clear();
    await Promise.all(closed);
    this.fileLimit?.mqtt.close();
    this.fileLimit?.mqtts.close();
    for (const log of this.listenerErrorLogs.splice(0)) log.close();
    for (const log of this.handshakeLogs.values()) log.close();
    this.handshakeLogs.clear();
  }
}

/** Reads a connection's peer address while it is open: net.Socket keeps it for later reads. */
function rememberPeer(socket: net.Socket): void {
  void socket.remoteAddress;
}

const UNTRUSTED_CA = 'client certificate of a CA this server does not trust (a previous CA dropped?)';

/** What a refused MQTTS handshake's reason likely means, for the operator (OpenSSL's verification codes as Node names them). */
const HANDSHAKE_HINTS: Record<string, string> = {
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: UNTRUSTED_CA,
  UNABLE_TO_GET_ISSUER_CERT: UNTRUSTED_CA,
  UNABLE_TO_GET_ISSUER_CERT_LOCALLY: UNTRUSTED_CA,
  SELF_SIGNED_CERT_IN_CHAIN: UNTRUSTED_CA,
  CERT_SIGNATURE_FAILURE: UNTRUSTED_CA,
  CERT_HAS_EXPIRED: 'client certificate expired (updraft device cert issues a new one)',
  CERT_NOT_YET_VALID: "client certificate not valid yet (the device's or the server's clock?)",
  ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE: 'no client certificate: MQTTS devices log in with one',
};

/**
 * Packets written to one connection during one turn of the event loop leave in one system
 * call. mqtt-packet corks a socket for one packet only (until the next tick), and a device's
 * answers come a few callbacks apart (a shadow update's `accepted`, then its `delta`), so
 * each took a `writev` of its own (`writev` is the largest item of the server's profile
 * during a fleet update, 12-13%). Held until the loop's check phase (`setImmediate`), they go
 * out together: 2 system calls fewer per device updated (strace: 60,013 `writev` instead of
 * 70,013 for 5,000 devices), and no packet waits longer than the turn it was written in.
 * Backpressure is unchanged: `write` still returns false past the socket's high-water mark,
 * and the drain follows the flush.
 */
export function coalesceWrites<S extends net.Socket>(socket: S): S {
  // the shared write below calls the prototype's write and cork: a socket with its own would
  // lose them (checked at the start on sockets of Node's classes, `checkConnections`; here
  // again per connection, two lookups)
  if (Object.hasOwn(socket, 'write') || Object.hasOwn(socket, 'cork')) throw new UpdraftError('INTERNAL', 'a socket with its own write or cork: its writes cannot be coalesced');
  socket.write = coalescedWrite as S['write'];
  // mqtt-packet corks a stream for each packet it writes and uncorks it on the next tick: a
  // process.nextTick per packet (1.6% of the server in a fleet update, profiled) for what
  // the turn-long cork above already does. It corks only a stream that has `cork`, so the
  // socket shows it none (nothing else calls it: Node's sockets do not cork themselves).
  Object.defineProperty(socket, 'cork', { value: undefined, configurable: true, writable: true });
  return socket;
}

/**
 * Every coalesced socket's `write`: corks the socket at its first write of the turn, uncorked
 * at the loop's check phase. One function for all sockets, which reaches the socket's own
 * write and cork through its prototype (a function made per connection costs ~312 bytes under
 * tsx, which keeps function names).
 */
function coalescedWrite(this: net.Socket, ...args: unknown[]): boolean {
  const proto = Object.getPrototypeOf(this) as net.Socket;
  if (!corkedSockets.has(this)) {
    corkedSockets.add(this);
    proto.cork.call(this);
    setImmediate(uncorkSocket, this);
  }
  return (proto.write as (...a: unknown[]) => boolean).apply(this, args);
}

/** The sockets `coalesceWrites` corked for this turn, uncorked by one function for all. */
const corkedSockets = new WeakSet<net.Socket>();

function uncorkSocket(socket: net.Socket): void {
  corkedSockets.delete(socket);
  socket.uncork();
}
