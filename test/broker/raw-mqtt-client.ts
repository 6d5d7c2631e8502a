/**
 * An MQTT 3.1.1 client (mqtt-packet over TCP) that sends the packets it is given, as written,
 * and keeps those it receives: for what MQTT.js never does by itself (a retransmission with
 * the same packet id, a PUBREL withheld).
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import mqttPacket, { type IPublishPacket, type Packet } from 'mqtt-packet';

/** A raw MQTT client over one TCP connection. */
export class RawClient {
  readonly received: Packet[] = [];
  /** Resolves when the server has closed the connection (or it was dropped). */
  readonly closed: Promise<void>;
  private waiters: { match: (p: Packet) => boolean; resolve: (p: Packet) => void }[] = [];
  private constructor(private readonly socket: net.Socket) {
    const parser = mqttPacket.parser({ protocolVersion: 4 });
    parser.on('packet', (p: Packet) => {
      this.received.push(p);
      this.waiters = this.waiters.filter((w) => (w.match(p) ? (w.resolve(p), false) : true));
    });
    socket.on('data', (d) => parser.parse(d));
    socket.on('error', () => {});
    this.closed = new Promise((resolve) => socket.once('close', () => resolve()));
  }

  /** Connects as `id` (the user name too, unless given) and waits for a CONNACK accepting it. */
  static async connect(port: number, id: string, password: string, clean: boolean, username = id): Promise<RawClient> {
    const socket = net.connect(port, '127.0.0.1');
    await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
    const c = new RawClient(socket);
    const ack = c.next((p) => p.cmd === 'connack');
    c.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean, clientId: id, keepalive: 60, username, password: Buffer.from(password) });
    const connack = (await ack) as Packet & { returnCode: number };
    assert.equal(connack.returnCode, 0);
    return c;
  }

  /** Writes the packets in one write: the broker reads them together, in one batch. */
  send(...packets: Packet[]): void {
    this.socket.write(Buffer.concat(packets.map((p) => mqttPacket.generate(p))));
  }

  /** The first packet (already received or future) that matches. */
  next(match: (p: Packet) => boolean, timeoutMs = 10_000): Promise<Packet> {
    const seen = this.received.find(match);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no matching packet within ${timeoutMs} ms; got: ${this.received.map((p) => p.cmd).join(', ')}`)), timeoutMs);
      this.waiters.push({ match, resolve: (p) => (clearTimeout(timer), resolve(p)) });
    });
  }

  /** How many packets received so far match. */
  count(match: (p: Packet) => boolean): number {
    return this.received.filter(match).length;
  }

  /** Subscribes to `filter` at QoS 0 and waits for the SUBACK. */
  async subscribe(filter: string): Promise<void> {
    const ack = this.next((p) => p.cmd === 'suback' && p.messageId === 1);
    this.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: filter, qos: 0 }] });
    await ack;
  }

  /** Whether the connection is still open. */
  get open(): boolean {
    return !this.socket.destroyed && !this.socket.readableEnded;
  }

  /** Ends the connection without DISCONNECT, as a lost link does. */
  drop(): void {
    this.socket.destroy();
  }

  async end(): Promise<void> {
    this.send({ cmd: 'disconnect' });
    this.socket.end();
    await this.closed;
  }
}

/** A PUBLISH of `body` as JSON (a Buffer as it is). */
export const publish = (topic: string, body: unknown, messageId: number, qos: 1 | 2 = 2): IPublishPacket => ({
  cmd: 'publish',
  topic,
  payload: Buffer.isBuffer(body) ? body : Buffer.from(JSON.stringify(body)),
  qos,
  messageId,
  dup: false,
  retain: false,
});

/** Whether `p` is a PUBLISH on `topic` (with `clientToken` in its JSON body, when given). */
export const isPublish = (p: Packet, topic: string, clientToken?: string): boolean => {
  if (p.cmd !== 'publish' || p.topic !== topic) return false;
  return clientToken === undefined || JSON.parse(p.payload.toString()).clientToken === clientToken;
};
