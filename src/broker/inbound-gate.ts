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

/** aedes's client, as far as the gate reaches into it. */
interface GatedClient {
  connackSent?: boolean;
  _parser?: {
    listeners(event: 'packet'): ((packet: ParsedPacket) => void)[];
    removeListener(event: 'packet', listener: (packet: ParsedPacket) => void): void;
    on(event: 'packet', listener: (packet: ParsedPacket) => void): void;
  };
}

/** Packets that go ahead of queued PUBLISH packets: they free places or answer nothing queued. */
const PASSING = new Set(['pubrel', 'puback', 'pubrec', 'pubcomp', 'pingreq']);

/** What a queued packet is counted as besides its length: the parsed object's own size, roughly. */
const PACKET_OVERHEAD_BYTES = 256;

/** Options of a connection's gate. */
export interface InboundGateOptions {
  /** Whether `packet` must wait for a place (a QoS 2 PUBLISH its session has none for). */
  mustWait(packet: ParsedPacket): boolean;
  /** Called once aedes has taken `packet` (a PUBREL frees a place: then call `drain`). */
  taken(packet: ParsedPacket): void;
  /** Most bytes queued; one packet more closes the connection through `overflow`. */
  maxQueuedBytes: number;
  /** The queue is over its bound: close the connection. Called once. */
  overflow(queuedBytes: number): void;
}

/** A connection's PUBLISH packets held back while its session has no place for one more QoS 2 message. */
export class InboundGate {
  private readonly queue: ParsedPacket[] = [];
  private queuedBytes = 0;
  private overflowed = false;
  private readonly enqueue: (packet: ParsedPacket) => void;

  /** Takes over the parser listener of `client` (an aedes client just made). */
  constructor(
    private readonly client: object,
    private readonly opts: InboundGateOptions,
  ) {
    const parser = (client as GatedClient)._parser;
    const listeners = parser?.listeners('packet');
    // an aedes upgrade that reads its packets otherwise would leave the gate out unnoticed: the
    // embedded broker makes one client at its start, so such an upgrade refuses to start there
    if (!parser || listeners?.length !== 1 || typeof listeners[0] !== 'function') throw new UpdraftError('INTERNAL', "aedes client without its one parser 'packet' listener: PUBLISH packets cannot be held back while QoS 2 messages await their PUBREL");
    const enqueue = listeners[0];
    this.enqueue = (packet) => enqueue.call(parser, packet);
    parser.removeListener('packet', enqueue);
    parser.on('packet', (packet) => this.receive(packet));
  }

  /** Hands queued packets to aedes, in order, while the first may go (call when a place frees). */
  drain(): void {
    while (this.queue.length > 0 && !this.overflowed && !this.opts.mustWait(this.queue[0]!)) {
      const packet = this.queue.shift()!;
      this.queuedBytes -= (packet.length ?? 0) + PACKET_OVERHEAD_BYTES;
      this.take(packet);
    }
  }

  /** Packets queued (tests). */
  get queued(): number {
    return this.queue.length;
  }

  private receive(packet: ParsedPacket): void {
    if (this.overflowed) return;
    const gated = (this.client as GatedClient).connackSent === true;
    if (!gated || PASSING.has(packet.cmd) || (this.queue.length === 0 && !this.opts.mustWait(packet))) return this.take(packet);
    this.queue.push(packet);
    this.queuedBytes += (packet.length ?? 0) + PACKET_OVERHEAD_BYTES;
    if (this.queuedBytes > this.opts.maxQueuedBytes) {
      this.overflowed = true;
      this.queue.length = 0;
      this.opts.overflow(this.queuedBytes);
    }
  }

  private take(packet: ParsedPacket): void {
    this.enqueue(packet);
    this.opts.taken(packet);
  }
}
