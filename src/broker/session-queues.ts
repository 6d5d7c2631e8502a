/**
 * The queues of outgoing QoS 1 and 2 messages aedes keeps per session, held here in place of
 * its memory persistence's own, so that a client id with nothing queued holds no entry.
 *
 * aedes-persistence 11's memory store keeps them in a private Map by client id, and its
 * `outgoingClearMessageId` (aedes calls it for every PUBACK and PUBCOMP, lib/handlers/puback.js,
 * of clean sessions too, whose QoS 1 messages are never queued) and `outgoingUpdate` create
 * an empty queue under the id when there is none; no call of its API ever deletes one. So
 * every client id that ever acknowledged a QoS 1 message stayed in the store for the life of
 * the broker: each operator tool connection with a fresh random id (mqtt.js's default
 * `mqttjs_…`), each device id (deleted ones too, `endSession` emptied the queue and left it):
 * 15,000 operator connections held 15,000 ids, +1.2 MB (QA). A private field is out of reach,
 * so the store's five outgoing calls are replaced here, with its semantics (below) but for
 * that: a queue goes as its last message is cleared, and none is made to find nothing in.
 * The store's own Map is then never touched.
 */
import { createRequire } from 'node:module';
import { Readable } from 'node:stream';
import type { PublishPacket } from 'aedes';
import { UpdraftError } from '../errors.ts';

/** A message (or, once its PUBREC came, the PUBREL that stands for it) in a session's queue. */
type Queued = { cmd?: string; messageId?: number; brokerId?: string; brokerCounter?: number };

/** aedes-persistence's outgoing queue calls (asyncPersistence.js), as aedes makes them. */
interface OutgoingCalls {
  outgoingEnqueue(sub: { clientId: string }, packet: PublishPacket): Promise<void>;
  outgoingEnqueueCombi(subs: { clientId: string }[], packet: PublishPacket): Promise<void>;
  outgoingUpdate(client: { id: string }, packet: Queued): Promise<void>;
  outgoingClearMessageId(client: { id: string }, packet: Queued): Promise<Queued | undefined>;
  outgoingStream(client: { id: string }): Readable;
}

/** The store's methods that reach its queues: every one is replaced (`adopt`). */
const OUTGOING_CALLS = ['outgoingClearMessageId', 'outgoingEnqueue', 'outgoingEnqueueCombi', 'outgoingStream', 'outgoingUpdate'] as const;

/**
 * The copy the store queues of a message (aedes-packet's Packet, as aedes resolves it: the
 * store's own copy). Each session's entry gets its own packet id as it is written.
 */
const Packet = createRequire(import.meta.resolve('aedes'))('aedes-packet') as new (original: object) => Queued;

/** Each session's queue of outgoing messages, by client id; a client id with none has no entry. */
export class SessionQueues {
  private readonly queues = new Map<string, Queued[]>();

  /** Client ids holding a queue (at least one message not yet acknowledged). */
  get size(): number {
    return this.queues.size;
  }

  /**
   * Takes over the outgoing queues of aedes's `persistence` (before anything is queued:
   * `start`): of the memory store it wraps (aedes-persistence's callback layer hands every
   * call on to its `asyncPersistence`), so calls through the layer's other wrappers come here
   * too. Throws, having changed nothing, when that is not aedes-persistence's memory store
   * with exactly the outgoing calls replaced here: another store keeps its queues elsewhere,
   * and an upgrade adding a call would reach the store's own Map, now always empty.
   */
  adopt(persistence: object): void {
    const store = (persistence as { asyncPersistence?: unknown }).asyncPersistence;
    const proto = typeof store === 'object' && store !== null ? (Object.getPrototypeOf(store) as object | null) : null;
    const calls: string[] = [];
    for (let p = proto; p && p !== Object.prototype; p = Object.getPrototypeOf(p) as object | null) calls.push(...Object.getOwnPropertyNames(p).filter((n) => n.startsWith('outgoing') && !calls.includes(n)));
    calls.sort();
    if (!proto || proto.constructor.name !== 'MemoryPersistence' || calls.join() !== OUTGOING_CALLS.join()) {
      throw new UpdraftError('INTERNAL', `aedes's persistence does not wrap aedes-persistence's memory store with the outgoing calls ${OUTGOING_CALLS.join(', ')} (found ${proto?.constructor.name ?? 'none'}: ${calls.join(', ')}): its queues of session messages cannot be kept bounded`);
    }
    this.queues.clear(); // a store of its own for each start of the broker
    const s = store as OutgoingCalls;
    s.outgoingEnqueue = async (sub, packet) => this.enqueue(sub.clientId, packet);
    s.outgoingEnqueueCombi = async (subs, packet) => {
      for (const sub of subs) this.enqueue(sub.clientId, packet);
    };
    s.outgoingUpdate = async (client, packet) => this.update(client.id, packet);
    s.outgoingClearMessageId = async (client, packet) => this.clear(client.id, packet.messageId);
    // a copy: the queue changes while aedes goes through it
    s.outgoingStream = (client) => Readable.from([...(this.queues.get(client.id) ?? [])]);
  }

  /** Ends a session's queue, whatever it holds (`EmbeddedBroker.endSession`). */
  end(clientId: string): void {
    this.queues.delete(clientId);
  }

  private enqueue(clientId: string, packet: PublishPacket): void {
    const queue = this.queues.get(clientId);
    if (queue) queue.push(new Packet(packet));
    else this.queues.set(clientId, [new Packet(packet)]);
  }

  /**
   * Gives a queued message the packet id it is written with, or puts a PUBREL in the place
   * of the message whose packet id it has (its PUBREC came). As the store: a message is found
   * by its broker's number, the packet id alone naming a message only across brokers or for
   * a PUBREL (ids wrap at 65,535); none found is 'no such packet'.
   */
  private update(clientId: string, packet: Queued): void {
    const queue = this.queues.get(clientId) ?? [];
    for (let i = 0; i < queue.length; i++) {
      const queued = queue[i]!;
      if (queued.brokerId === packet.brokerId) {
        if (queued.brokerCounter === packet.brokerCounter) {
          queued.messageId = packet.messageId;
          return;
        }
      } else if (queued.messageId === packet.messageId) {
        queue[i] = packet;
        return;
      }
    }
    throw new Error('no such packet');
  }

  /**
   * Removes and returns the first entry with packet id `messageId` (undefined: the first not
   * yet written), what aedes's PUBACK handler hands on in its 'ack' event; undefined when none.
   */
  private clear(clientId: string, messageId: number | undefined): Queued | undefined {
    const queue = this.queues.get(clientId);
    if (!queue) return undefined;
    const i = queue.findIndex((q) => q.messageId === messageId);
    if (i < 0) return undefined;
    const [cleared] = queue.splice(i, 1);
    if (queue.length === 0) this.queues.delete(clientId);
    return cleared;
  }
}
