/**
 * One copy of each message per connection, without aedes's loss of messages that overtook
 * each other (aedes#994, still in aedes 1.2).
 *
 * aedes numbers each message as it is published (`brokerCounter`) and, per connection, drops
 * any message numbered at or below the highest one already forwarded there (`dedupe` in
 * lib/client.js): meant for the copies a cluster or overlapping subscriptions deliver, it
 * assumes messages reach a connection in the order they were numbered. They do not: a QoS 1
 * or 2 message waits for the session store (aedes's `enqueueOffline`, a promise) before it
 * is delivered, a QoS 0 one does not. So a QoS 0 message published just after a QoS 1 one
 * reached the client first, and the QoS 1 one was then dropped as a "duplicate", silently:
 * a device subscribed to `$aws/things/{thing}/jobs/#` that sent `shadow/get` and `jobs/get`
 * in one write got the echo of its own `shadow/get` (QoS 0) ahead of the `jobs/get/accepted`
 * answer (QoS 1), which never came, though the request had been carried out (a
 * `jobs/start-next` had moved the execution to IN_PROGRESS).
 *
 * Here aedes's high-water mark is switched off and a message is dropped only when it is the
 * very message last forwarded to that connection: the copies overlapping subscriptions make
 * (MQTT 3.1.1 §3.3.5 lets the server send one) come one after the other, in the same
 * synchronous round of mqemitter over the matching subscriptions, so comparing with the last
 * one catches them all. This broker is never clustered: no other broker's copies exist.
 */
import { Readable } from 'node:stream';
import type { Client, PublishPacket } from 'aedes';
import { UpdraftError } from '../errors.ts';
import { isExact, matches } from './topic-matcher.ts';

/** A message as aedes numbers it. */
type NumberedPacket = PublishPacket & { brokerId?: string | null; brokerCounter?: number };

/** aedes-persistence's queue of a persistent session's outgoing messages (asyncPersistence.js), as far as ForwardOnce reaches into it. */
export interface OutgoingQueue {
  outgoingEnqueueCombi(subs: { clientId: string }[], packet: PublishPacket): Promise<void>;
  outgoingClearMessageId(client: { id: string }, packet: PublishPacket): Promise<unknown>;
}

/** aedes-persistence's retained messages (asyncPersistence.js), as far as ForwardOnce reaches into them. */
export interface RetainedStore {
  createRetainedStreamCombi(patterns: string[]): Readable;
}

/** aedes's functions that write a copy of a message to a client (its `deliver0` and `deliverQoS`, lib/client.js). */
type Deliver = (packet: object, cb: () => void) => void;

/** aedes's record of a subscription a client holds (its `Subscription`, lib/handlers/subscribe.js). */
type HeldSubscription = { qos: number };

/** Forwards each message once per connection, whatever order messages arrive in. */
export class ForwardOnce {
  /** The message last offered to each connection: its number, the QoS it goes at, whether a copy went. */
  private readonly last = new WeakMap<Client, { counter: number; qos: number; sent: boolean }>();
  /** Copies that came through a QoS 0 subscription (aedes's `deliver0`), which writes at QoS 0 whatever the packet says. */
  private readonly viaQos0 = new WeakSet<object>();
  private readonly brokerId: string;
  /** Copies `authorize` declined (aedes then clears them from a persistent session's queue). */
  private readonly declined = new WeakSet<object>();
  /** Each connection's subscriptions record itself, behind the proxy `adoptSubscriptions` gives aedes. */
  private readonly held = new WeakMap<object, Record<string, HeldSubscription>>();

  constructor(brokerId: string) {
    this.brokerId = brokerId;
  }

  /**
   * Readies aedes's client class (`clientPrototype`, from a client made before) for `adopt`:
   * its deliver0 and deliverQoS become accessors of the class, which the constructor's
   * assignments go through. Turning a client's own data property into an accessor, as this
   * did per client, puts V8 in dictionary mode for that client: 1.6 KB of properties per
   * connection instead of a few hundred bytes (the thirty-seventh session's heap snapshots).
   * Once per class; clients made before keep their own properties, and `adopt` refuses them.
   */
  static prepare(clientPrototype: object): void {
    if (prepared.has(clientPrototype)) return;
    for (const name of ['deliver0', 'deliverQoS'] as const) {
      // an upgrade that made them methods, or accessors, of the class: the setter would not see them
      if (Object.getOwnPropertyDescriptor(clientPrototype, name)) throw new UpdraftError('INTERNAL', `aedes's client class has its own ${name}: the QoS of messages matching several subscriptions cannot be chosen`);
    }
    Object.defineProperty(clientPrototype, 'deliver0', deliver0Property);
    Object.defineProperty(clientPrototype, 'deliverQoS', deliverQoSProperty);
    prepared.add(clientPrototype);
  }

  /**
   * Readies aedes's subscription class for the records of adopted clients (their qos an
   * accessor of the class, `subscriptionQosProperty`) from a record aedes makes for `probe`, a
   * client of an aedes that admits every subscription, adopted here and subscribed once; the
   * caller closes it. An aedes whose records are not of a class of their own, or one with its
   * own qos, or which stores a subscription outside the run that read the client's deliver
   * function, throws here, at the start, instead of at the first SUBSCRIBE while serving (where
   * the record's proxy, `heldHandler`, still checks the same, which costs nothing per message).
   */
  prepareSubscriptions(probe: Client): void {
    this.adopt(probe);
    const filter = 'updraft/check/+';
    // aedes's SUBSCRIBE, synchronous to the record stored with an aedes that admits every
    // subscription and a clean session (authorize, storeSubscriptions, addSubs):
    // `heldHandler` readies the record's class, or throws out of this call
    probe.subscribe({ topic: filter, qos: 1 }, () => {});
    const record = adoptedClients.get(probe)!.held[filter];
    if (record === undefined || !preparedSubscriptions.has(Object.getPrototypeOf(record) as object)) {
      throw new UpdraftError('INTERNAL', "aedes stored no subscription record in the run of a client's subscribe: a topic's QoS among overlapping subscriptions cannot be chosen");
    }
  }

  /**
   * Switches aedes's own filter off for `client` (a connection just handed to aedes, before
   * it can subscribe): its record of the highest number forwarded always reads as none.
   */
  adopt(client: object): void {
    const c = client as { duplicates?: unknown; deliver0?: Deliver; deliverQoS?: Deliver };
    const duplicates = c.duplicates;
    // an aedes upgrade that moved the filter would bring the loss back unnoticed
    if (typeof duplicates !== 'object' || duplicates === null) throw new UpdraftError('INTERNAL', "aedes client without its duplicates record: messages that overtake each other would be dropped (aedes#994)");
    // one record for all connections, which holds no number (aedes's, one per connection, is
    // an object without prototype, always in dictionary mode: ~200 bytes)
    c.duplicates = neverForwarded;
    // a subscription takes the client's deliver function as it is made (aedes's addSubs): so
    // from here every QoS 0 subscription's copy is marked as one (`qosOf`). The constructor
    // gave them to the class's setters (`prepare`)
    const made = constructed.get(client);
    constructed.delete(client);
    if (!prepared.has(Object.getPrototypeOf(client)) || Object.hasOwn(client, 'deliver0') || Object.hasOwn(client, 'deliverQoS') || typeof made?.deliver0 !== 'function' || typeof made.deliverQoS !== 'function') {
      throw new UpdraftError('INTERNAL', 'aedes client without its deliver0 and deliverQoS set through its class (ForwardOnce.prepare): the QoS of messages matching several subscriptions cannot be chosen');
    }
    const adopted: Adopted = { client: client as Client, held: this.adoptSubscriptions(client), adding: false, deliver0: made.deliver0, deliverQoS: made.deliverQoS, viaQos0: undefined, marked: this.viaQos0 };
    adoptedClients.set(client, adopted);
    adoptedHeld.set(adopted.held, adopted);
  }

  /**
   * Makes aedes's own lowering of a copy's QoS ([MQTT-3.8.4-6]) read the QoS the topic goes
   * at, not only the QoS of a filter equal to the topic.
   *
   * aedes's deliverQoS lowers each copy it writes to the QoS of `client.subscriptions[topic]`,
   * the filter equal to the topic if the client holds one, after `authorizeForward` chose the
   * copy and its QoS: so with `state/x/#` granted QoS 1 and `state/x/update/accepted` granted
   * QoS 0, an `update/accepted` published at QoS 1 still came at QoS 0 ([MQTT-3.3.5-1] asks
   * for the highest of the two), and in a persistent session that QoS 0 write left the
   * message's queued entry unacknowledged: it came again at the next connection. Here the
   * record of such a filter (no wildcard: a topic name has none) reads as the highest QoS the
   * client's matching filters grant (`grantedQos`), its own granted QoS kept aside; which
   * deliver function a subscription uses was chosen from the QoS granted, before its record
   * is stored.
   *
   * One other reader must see the QoS granted: aedes's addSubs, which on a SUBSCRIBE repeating
   * a filter keeps the subscription held when its record's qos equals the QoS asked for, and
   * replaces it otherwise [MQTT-3.8.4-3]. Reading the topic's QoS there, `exact/a` granted 0
   * and asked again at 1 while `exact/#` granted 1 was kept as it was (written at QoS 0, SUBACK
   * 1), and once `exact/#` went its messages came at QoS 0. So the record reads its own grant
   * while a subscription is being added: from the call of the function returned (addSubs reads
   * the client's deliver function, synchronously, just before it compares) to the end of that
   * synchronous run. aedes's lowering runs later, in a setImmediate of its own, and reads no
   * deliver function before it.
   *
   * Returns the record behind the proxy (`heldHandler`; `subscribing` marks a subscription being added).
   */
  private adoptSubscriptions(client: object): Record<string, HeldSubscription> {
    const c = client as { subscriptions?: Record<string, HeldSubscription> };
    const held = c.subscriptions;
    if (typeof held !== 'object' || held === null || Object.keys(held).length > 0) throw new UpdraftError('INTERNAL', "aedes client without an empty subscriptions record: a topic's QoS among overlapping subscriptions cannot be chosen");
    this.held.set(client, held);
    c.subscriptions = new Proxy(held, heldHandler);
    return held;
  }

  /**
   * Sends each retained message once on a SUBSCRIBE whose filters overlap. aedes sends, for
   * each filter of the SUBSCRIBE, every retained message it matches (its persistence's
   * createRetainedStreamCombi chains one stream per filter): `held/a` and `held/#` in one
   * SUBSCRIBE brought `held/a` twice. A store keeps one retained message per topic, so one
   * per topic in the stream is each once; the QoS it goes at is chosen in `first`.
   */
  adoptRetained(store: RetainedStore): void {
    if (typeof store.createRetainedStreamCombi !== 'function') throw new UpdraftError('INTERNAL', "aedes's persistence has no createRetainedStreamCombi: retained messages cannot be sent once");
    const combi = store.createRetainedStreamCombi.bind(store);
    store.createRetainedStreamCombi = (patterns) => {
      const stream = combi(patterns);
      if (patterns.length < 2) return stream;
      return Readable.from(
        (async function* () {
          const topics = new Set<string>();
          for await (const packet of stream as AsyncIterable<PublishPacket>) if (!topics.has(packet.topic) && topics.add(packet.topic)) yield packet;
        })(),
      );
    };
  }

  /**
   * Keeps one copy of each message per persistent session (`clean: false`) in aedes's queue
   * of outgoing messages, and none of a message that goes nowhere (`discarded`: the ACL's).
   *
   * aedes queues a copy per matching subscription of the session (outgoingEnqueueCombi gets
   * one entry per filter), delivers one, and for each copy it does not forward (the
   * duplicates above) clears "the packet" from the queue by its packet id, which such a copy
   * does not have yet: aedes-persistence then removes the first entry without a packet id,
   * whichever message it is. So with `state/x/#` and `state/x/update/delta` held by one
   * session, a delta's second copy removed the entry of an answer published just before it
   * and not yet written (its `update/accepted`); that answer's write then found no entry
   * ('no such packet'), which closed the connection: nothing reached the device until it
   * reconnected, and the `accepted` never. And the copies left in the queue were sent again
   * at each reconnection though the device had acknowledged the message (PUBACK removes the
   * entry whose packet id it names: one of the two).
   */
  adoptQueue(queue: OutgoingQueue, discarded: (packet: PublishPacket) => boolean): void {
    const enqueue = queue.outgoingEnqueueCombi.bind(queue);
    queue.outgoingEnqueueCombi = (subs, packet) => {
      if (discarded(packet)) return Promise.resolve();
      const sessions = new Set<string>();
      return enqueue(subs.filter((s) => !sessions.has(s.clientId) && sessions.add(s.clientId)), packet);
    };
    const clear = queue.outgoingClearMessageId.bind(queue);
    // a copy declined here has no packet id (never written): the message's one entry stays
    // for the copy forwarded (a discarded message has none). Entries of the queue itself,
    // also without one until written, are still cleared (a clean session, `endSession`)
    queue.outgoingClearMessageId = (client, packet) => (packet.messageId === undefined && this.declined.has(packet) ? Promise.resolve(undefined) : clear(client, packet));
  }

  /**
   * aedes's `authorizeForward`: `packet` as it goes to `client`, or null when it does not
   * (`discarded`, or a copy of the message just forwarded there).
   */
  authorize<P extends PublishPacket>(client: Client, packet: P, discarded: boolean): P | null {
    if (!discarded && this.first(client, packet)) return packet;
    this.declined.add(packet);
    return null;
  }

  /**
   * False when `packet` is a copy of a message that goes to `client` by another copy: one
   * already forwarded, or one at a higher QoS coming in the same round. The copy forwarded
   * goes at the QoS MQTT asks: the highest granted by the client's subscriptions that match
   * ([MQTT-3.3.5-1]), at most the message's own ([MQTT-3.8.4-6]: a QoS 2 message reaches a
   * QoS 1 subscription at QoS 1). aedes forwarded the copy of whichever subscription came
   * first (an `update/accepted` held by `#` at QoS 0 and by `update/accepted` at QoS 1 came
   * at QoS 0) and lowered the QoS only for a filter equal to the topic (a QoS 2 message came
   * at QoS 2 through `state/x/#` granted QoS 1).
   */
  private first(client: Client, packet: PublishPacket): boolean {
    const { brokerId, brokerCounter } = packet as NumberedPacket;
    if (!brokerId || brokerCounter === undefined) {
      // a retained message sent on SUBSCRIBE (it carries no broker id, and one copy comes:
      // `adoptRetained`): aedes sent it at its own QoS through a wildcard filter, and through
      // a filter equal to its topic lowered it to that filter's QoS only [MQTT-3.8.4-6]
      const granted = grantedQos(client, packet.topic, this.held.get(client));
      if (packet.retain && granted < packet.qos) packet.qos = granted as 0 | 1;
      return true;
    }
    let last = this.last.get(client);
    if (last?.counter !== brokerCounter) {
      // the copies of one message come one after the other, in one synchronous round of
      // mqemitter over the matching subscriptions: decided once, at the first
      last = { counter: brokerCounter, qos: Math.min(packet.qos, grantedQos(client, packet.topic, this.held.get(client))), sent: false };
      this.last.set(client, last);
    }
    if (last.sent) return false;
    const qos0Copy = packet.qos === 0 || this.viaQos0.has(packet);
    // a QoS 1 or 2 subscription matches too: its copy comes in this round
    if (qos0Copy && last.qos > 0) return false;
    last.sent = true;
    // (at least 1: a copy of a session's queue, sent again as the session resumes, has its
    // packet id and is acknowledged by it, whatever the subscriptions are by then)
    if (!qos0Copy && last.qos > 0 && last.qos < packet.qos) packet.qos = last.qos as 1 | 2;
    return true;
  }
}

/**
 * What `adopt` keeps of a connection, for the functions below, which all connections share:
 * a function made per connection costs ~312 bytes under tsx (esbuild's kept names give each
 * one a dictionary of properties), a plain object far less.
 */
interface Adopted {
  client: Client;
  /** Its subscriptions record, behind the proxy aedes holds. */
  held: Record<string, HeldSubscription>;
  /** Whether a subscription is being added (`subscribing`). */
  adding: boolean;
  /** aedes's own deliver functions of the client. */
  deliver0: Deliver;
  deliverQoS: Deliver;
  /** deliver0 marking its copies as a QoS 0 subscription's, made when first read (`viaQos0Of`). */
  viaQos0: Deliver | undefined;
  /** Where those copies are marked (the ForwardOnce's `viaQos0`). */
  marked: WeakSet<object>;
}

/** Each adopted client's record, by the client and by its subscriptions record. */
const adoptedClients = new WeakMap<object, Adopted>();
const adoptedHeld = new WeakMap<object, Adopted>();

/**
 * aedes's record of the highest number forwarded to a connection, for all connections: it
 * holds none, so aedes's filter forwards every copy (`adopt`). A proxy, so that it holds no
 * number under any broker id (this broker is never clustered: only its own id comes).
 */
const neverForwarded: object = new Proxy(Object.create(null) as object, { get: () => undefined, set: () => true });

/** aedes client classes whose deliver0 and deliverQoS are the accessors below (`ForwardOnce.prepare`). */
const prepared = new WeakSet<object>();
/** The deliver functions aedes's constructor gave each client, until `adopt` takes them. */
const constructed = new WeakMap<object, { deliver0?: Deliver; deliverQoS?: Deliver }>();

/** Keeps what aedes's constructor gives a client (`name`); aedes giving it again once the client is adopted (an upgrade) throws. */
function constructorGives(client: object, name: 'deliver0' | 'deliverQoS', fn: Deliver): void {
  if (adoptedClients.has(client)) throw new UpdraftError('INTERNAL', `aedes set a client's ${name} again after the connection was set up: the QoS of messages matching several subscriptions cannot be chosen`);
  const made = constructed.get(client);
  if (made) made[name] = fn;
  else constructed.set(client, { [name]: fn });
}

/**
 * Marks a subscription of `adopted`'s client being added: from this call to the end of the
 * synchronous run (`adoptSubscriptions`).
 */
function subscribing(adopted: Adopted): void {
  if (adopted.adding) return;
  adopted.adding = true;
  queueMicrotask(() => (adopted.adding = false));
}

/** The client's deliver0 as its QoS 0 subscriptions take it: each copy marked as one's. */
function viaQos0Of(adopted: Adopted): Deliver {
  // a subscription keeps the function it read: one per connection, made at the first read
  // (a connection that never reads it, as one without QoS 0 subscriptions, has none)
  return (adopted.viaQos0 ??= (packet, cb) => {
    adopted.marked.add(packet);
    adopted.deliver0(packet, cb);
  });
}

/**
 * The client class's deliver0 and deliverQoS (`ForwardOnce.prepare`). A client not adopted
 * (a connection whose setup failed, which is closed) reads aedes's own; aedes reads both only
 * through the client (client.js, subscribe.js).
 */
const deliver0Property: PropertyDescriptor = {
  get(this: object) {
    const adopted = adoptedClients.get(this);
    if (!adopted) return constructed.get(this)?.deliver0;
    subscribing(adopted);
    return viaQos0Of(adopted);
  },
  set(this: object, fn: Deliver) {
    constructorGives(this, 'deliver0', fn);
  },
  configurable: true,
};

const deliverQoSProperty: PropertyDescriptor = {
  get(this: object) {
    const adopted = adoptedClients.get(this);
    if (!adopted) return constructed.get(this)?.deliverQoS;
    subscribing(adopted);
    return adopted.deliverQoS;
  },
  set(this: object, fn: Deliver) {
    constructorGives(this, 'deliverQoS', fn);
  },
  configurable: true,
};

/** Where a subscription record keeps the QoS granted (`subscriptionQosProperty`). */
const GRANTED = Symbol('granted');
/** On a record whose qos reads as its topic's (a filter without wildcard, `heldHandler`): its client's record and its filter. */
const EXACT = Symbol('exact');

/** aedes's subscription record as the accessor below keeps it. */
type KeptSubscription = HeldSubscription & { [GRANTED]?: number; [EXACT]?: { adopted: Adopted; filter: string } };

/** aedes subscription classes whose qos is the accessor below (`prepareSubscriptionClass`). */
const preparedSubscriptions = new WeakSet<object>();

/**
 * The qos of aedes's subscription records, an accessor of their class: the QoS granted,
 * kept on the record by the constructor's assignment; a record of a filter without
 * wildcard reads its topic's QoS (`grantedQos`), but its own grant while a subscription is
 * being added. On the class, not on each record: turning a record's own property into an
 * accessor, as this did, put every such record in V8's dictionary mode (448 bytes of
 * properties per connected device, the thirty-seventh session's heap snapshots).
 */
const subscriptionQosProperty: PropertyDescriptor = {
  get(this: KeptSubscription) {
    const exact = this[EXACT];
    if (exact === undefined || exact.adopted.adding) return this[GRANTED];
    return grantedQos(exact.adopted.client, exact.filter, exact.adopted.held);
  },
  set(this: KeptSubscription, qos: number) {
    this[GRANTED] = qos;
  },
  configurable: true,
};

/**
 * Makes qos an accessor of aedes's subscription class (`record`'s); throws when an upgrade
 * gave the class its own. Done at the start (`ForwardOnce.prepareSubscriptions`): for every
 * record after, one lookup.
 */
function prepareSubscriptionClass(record: object): void {
  const proto = Object.getPrototypeOf(record) as object;
  if (preparedSubscriptions.has(proto)) return;
  if (proto === Object.prototype || Object.getOwnPropertyDescriptor(proto, 'qos')) throw new UpdraftError('INTERNAL', "aedes subscription records not of a class of their own, or one with its own qos: a topic's QoS among overlapping subscriptions cannot be chosen");
  Object.defineProperty(proto, 'qos', subscriptionQosProperty);
  preparedSubscriptions.add(proto);
}

/** The proxy of each client's subscriptions record (`adoptSubscriptions`), one for all. */
const heldHandler: ProxyHandler<Record<string, HeldSubscription>> = {
  set(target, filter, record: KeptSubscription) {
    const adopted = adoptedHeld.get(target)!;
    if (typeof record !== 'object' || record === null) throw new UpdraftError('INTERNAL', "aedes subscription record not an object: a topic's QoS among overlapping subscriptions cannot be chosen");
    prepareSubscriptionClass(record);
    // a record made before its class was readied (the process's first: the probe's of
    // `prepareSubscriptions`) holds its qos itself: it goes to the record's GRANTED, read
    // through the class's accessor like every other
    const own = Object.getOwnPropertyDescriptor(record, 'qos');
    if (own) {
      if (!own.writable || typeof own.value !== 'number') throw new UpdraftError('INTERNAL', "aedes subscription record with a qos not its own number: a topic's QoS among overlapping subscriptions cannot be chosen");
      delete (record as { qos?: number }).qos;
      record[GRANTED] = own.value as number;
    }
    // an aedes upgrade that changed its subscription record would bring the lowering back unnoticed
    if (typeof record[GRANTED] !== 'number') throw new UpdraftError('INTERNAL', "aedes subscription record without its qos: a topic's QoS among overlapping subscriptions cannot be chosen");
    // addSubs stores a record in the synchronous run that read its deliver function: an
    // upgrade where it did not would have its check of a repeated filter read the topic's QoS
    if (!adopted.adding) throw new UpdraftError('INTERNAL', "aedes stored a subscription without reading the client's deliver function first: a SUBSCRIBE repeating a filter could keep its old QoS");
    if (typeof filter === 'string' && isExact(filter)) record[EXACT] = { adopted, filter };
    return Reflect.set(target, filter, record);
  },
};

/**
 * The highest QoS `client`'s subscriptions grant for `topic` (0 when none matches), read
 * from `held` (its subscriptions record, not aedes's proxy of it) when given.
 */
function grantedQos(client: Client, topic: string, held?: Record<string, HeldSubscription>): number {
  let qos = 0;
  const subscriptions = held ?? (client as unknown as { subscriptions: Record<string, HeldSubscription> }).subscriptions;
  for (const filter in subscriptions) {
    const record = subscriptions[filter] as KeptSubscription;
    const granted = record[GRANTED] ?? record.qos;
    if (granted > qos && matches(filter, topic)) qos = granted;
  }
  return qos;
}
