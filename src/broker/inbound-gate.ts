/**
 * Holds a connection's PUBLISH packets back while its session has no place for another QoS 2
 * message awaiting its PUBREL, instead of closing the connection: MQTT 3.1.1 has no receive
 * maximum, so a client within the protocol may send as many QoS 2 messages at once as it
 * likes (MQTT.js sends every publish at once), and was closed for it (the 21st of a device's
 * pipeline), with the requests read before it handled but unacknowledged.
 *
 * aedes hands each packet its parser reads to its handlers at once (its `enqueue`, the
 * parser's 'packet' listener), and reads the socket again once the packets of its last read
 * are through. Here that listener is taken over: a QoS 2 PUBLISH the session has no place for
 * (`mustWait`) and every packet after it are queued, in order, and handed to aedes as places
 * free; the socket is still read, so the PUBRELs that free them come through: a PUBREL (and
 * the acknowledgements of what the broker sends, and PINGREQ) passes the queue, which MQTT
 * allows: none of them names a message still queued, whose PUBREC has not gone. The queue is
 * bounded (`maxQueuedBytes`): past it the connection is closed, as the client then sent so
 * much behind its own messages awaiting their PUBREL that no PUBREL can come through before
 * it (and stopping to read would leave it stalled for good).
 *
 * Packets read before the CONNACK go to aedes as they come (it queues them itself until
 * the session is set up): the session's limit is then enforced by closing the connection,
 * as before (embedded-broker.ts).
 *
 * One gate serves every connection of a broker, and costs a connection nothing while it
 * queues nothing: its listener is one function for all parsers (aedes's is one too, called
 * with the parser, which names its client), its options take the client, and a connection's
 * queue exists only while it holds a packet (a gate object, closures and an empty queue of
 * its own cost each connection about 1.2 KB of heap, kept for its life).
 */
import { UpdraftError } from '../errors.ts';

/** A packet as mqtt-packet's parser gives it. */
export interface ParsedPacket {
  cmd: string;
  messageId?: number;
  qos?: number;
  /** Its remaining length, in bytes. */
  length?: number;
}

/** A 'packet' listener of mqtt-packet's parser: aedes's, called with the parser as `this`. */
type PacketListener = (this: GatedParser, packet: ParsedPacket) => void;

/** mqtt-packet's parser of an aedes client, as far as the gate reaches into it. */
interface GatedParser {
  /** Its aedes client (aedes sets it: its listener finds the client there). */
  client?: object;
  listeners(event: 'packet'): PacketListener[];
  removeListener(event: 'packet', listener: PacketListener): void;
  on(event: 'packet', listener: PacketListener): void;
}

/** aedes's client, as far as the gate reaches into it. */
interface GatedClient {
  connackSent?: boolean;
  _parser?: GatedParser;
}

/** Packets that go ahead of queued PUBLISH packets: they free places or answer nothing queued. */
const PASSING = new Set(['pubrel', 'puback', 'pubrec', 'pubcomp', 'pingreq']);

/** What a queued packet is counted as besides its length: the parsed object's own size, roughly. */
const PACKET_OVERHEAD_BYTES = 256;

/** Options of a broker's gate: each call names the connection (its aedes client). */
export interface InboundGateOptions {
  /** Whether `packet` must wait for a place (a QoS 2 PUBLISH its session has none for). */
  mustWait(client: object, packet: ParsedPacket): boolean;
  /** Called once aedes has taken `packet` (a PUBREL frees a place: then call `drain`). */
  taken(client: object, packet: ParsedPacket): void;
  /** Most bytes queued per connection; one packet more closes it through `overflow`. */
  maxQueuedBytes: number;
  /** A connection's queue is over its bound: close the connection. Called once per connection. */
  overflow(client: object, queuedBytes: number): void;
}

/** What a connection holds back; only while it holds something, or once it overflowed. */
interface Held {
  queue: ParsedPacket[];
  bytes: number;
  overflowed: boolean;
}

/** The PUBLISH packets of each connection held back while its session has no place for one more QoS 2 message. */
export class InboundGate {
  /** aedes's listener, taken over on every parser (`adopt`): one function for all its clients. */
  private enqueue: PacketListener | undefined;
  /** The listener put in its place: one for all parsers. */
  private readonly listener: PacketListener;
  /** Each connection's queue, while it holds a packet (or overflowed). */
  private readonly held = new WeakMap<object, Held>();

  constructor(private readonly opts: InboundGateOptions) {
    const gate = this;
    this.listener = function (this: GatedParser, packet: ParsedPacket) {
      gate.receive(this, packet);
    };
  }

  /**
   * Takes over the parser listener of `client` (an aedes client just made). Throws, having
   * changed nothing, unless the parser has exactly one 'packet' listener, the same function
   * as every client adopted before (aedes's module-level `enqueue`): an aedes upgrade that
   * reads its packets otherwise would leave the gate out unnoticed (the embedded broker sets
   * up two clients at its start, so such an upgrade refuses to start there).
   */
  adopt(client: object): void {
    const parser = (client as GatedClient)._parser;
    const listeners = parser?.listeners('packet');
    if (!parser || parser.client !== client || listeners?.length !== 1 || typeof listeners[0] !== 'function') throw new UpdraftError('INTERNAL', "aedes client without its one parser 'packet' listener: PUBLISH packets cannot be held back while QoS 2 messages await their PUBREL");
    const enqueue = listeners[0];
    if (this.enqueue !== undefined && enqueue !== this.enqueue) throw new UpdraftError('INTERNAL', "aedes clients with parser 'packet' listeners of their own (not one function for all): PUBLISH packets cannot be held back while QoS 2 messages await their PUBREL");
    this.enqueue = enqueue;
    parser.removeListener('packet', enqueue);
    parser.on('packet', this.listener);
  }

  /** Hands `client`'s queued packets to aedes, in order, while the first may go (call when a place frees). */
  drain(client: object): void {
    const held = this.held.get(client);
    if (!held) return;
    while (held.queue.length > 0 && !held.overflowed && !this.opts.mustWait(client, held.queue[0]!)) {
      const packet = held.queue.shift()!;
      held.bytes -= (packet.length ?? 0) + PACKET_OVERHEAD_BYTES;
      // what a PUBREL taken below drains (recursively) is gone from the queue already
      this.take(client, packet);
    }
    if (held.queue.length === 0 && !held.overflowed && this.held.get(client) === held) this.held.delete(client);
  }

  /** Packets queued on `client`'s connection (tests). */
  queued(client: object): number {
    return this.held.get(client)?.queue.length ?? 0;
  }

  private receive(parser: GatedParser, packet: ParsedPacket): void {
    const client = parser.client!;
    const held = this.held.get(client);
    if (held?.overflowed) return;
    const gated = (client as GatedClient).connackSent === true;
    if (!gated || PASSING.has(packet.cmd) || (held === undefined && !this.opts.mustWait(client, packet))) return this.take(client, packet);
    const h = held ?? { queue: [], bytes: 0, overflowed: false };
    if (!held) this.held.set(client, h);
    h.queue.push(packet);
    h.bytes += (packet.length ?? 0) + PACKET_OVERHEAD_BYTES;
    if (h.bytes > this.opts.maxQueuedBytes) {
      h.overflowed = true;
      h.queue.length = 0;
      this.opts.overflow(client, h.bytes);
    }
  }

  private take(client: object, packet: ParsedPacket): void {
    this.enqueue!.call((client as GatedClient)._parser!, packet);
    this.opts.taken(client, packet);
  }
}
