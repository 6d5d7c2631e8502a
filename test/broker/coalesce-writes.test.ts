/**
 * The embedded broker's sockets send what is written to them during one turn of the event
 * loop in one system call (coalesceWrites): a device's `accepted` and `delta` are written a
 * few callbacks apart, and each took a writev of its own. Checked on a real TCP connection,
 * by the chunks each call to the socket's writer carries, and by what the peer receives.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import mqttPacket from 'mqtt-packet';
import { coalesceWrites } from '../../src/broker/embedded-broker.ts';

/** The server side of a loopback connection, with the client side reading it. */
async function connectedPair(): Promise<{ server: net.Socket; client: net.Socket; close: () => void }> {
  const listener = net.createServer();
  await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve));
  const accepted = new Promise<net.Socket>((resolve) => listener.once('connection', resolve));
  const client = net.connect((listener.address() as net.AddressInfo).port, '127.0.0.1');
  const server = await accepted;
  return {
    server,
    client,
    close: () => {
      client.destroy();
      server.destroy();
      listener.close();
    },
  };
}

/** Counts the chunks of each flush of `socket` (one flush, one writev or write call). */
function flushes(socket: net.Socket): number[] {
  const seen: number[] = [];
  const s = socket as unknown as { _writev: (chunks: unknown[], cb: () => void) => void; _write: (c: unknown, e: string, cb: () => void) => void };
  const writev = s._writev.bind(socket);
  const write = s._write.bind(socket);
  s._writev = (chunks, cb) => (seen.push(chunks.length), writev(chunks, cb));
  s._write = (c, e, cb) => (seen.push(1), write(c, e, cb));
  return seen;
}

/** Writes a, then b on the next tick, then c in a later microtask: one turn of the loop. */
async function writeInOneTurn(socket: net.Socket): Promise<void> {
  socket.write('a');
  await new Promise<void>((resolve) => process.nextTick(resolve));
  socket.write('b');
  await Promise.resolve();
  socket.write('c');
  await new Promise<void>((resolve) => setImmediate(resolve));
  await new Promise<void>((resolve) => setImmediate(resolve));
}

function received(client: net.Socket, bytes: number): Promise<string> {
  let got = '';
  return new Promise((resolve) => {
    client.on('data', (d) => {
      got += d.toString();
      if (got.length >= bytes) resolve(got);
    });
  });
}

describe('coalesceWrites', () => {
  let pair: Awaited<ReturnType<typeof connectedPair>>;
  before(async () => {
    pair = await connectedPair();
  });
  after(() => pair.close());

  it('sends the writes of one turn of the event loop in one flush, in order', async () => {
    const seen = flushes(coalesceWrites(pair.server));
    const got = received(pair.client, 3);
    await writeInOneTurn(pair.server);
    assert.deepEqual(seen, [3], 'one flush carrying the three writes');
    assert.equal(await got, 'abc');
  });

  it('flushes again in the next turn', async () => {
    const seen = flushes(pair.server);
    const got = received(pair.client, 2);
    pair.server.write('d');
    await new Promise<void>((resolve) => setImmediate(resolve));
    pair.server.write('e');
    await new Promise<void>((resolve) => setImmediate(resolve));
    await new Promise<void>((resolve) => setImmediate(resolve));
    assert.deepEqual(seen, [1, 1]);
    assert.equal(await got, 'de');
  });

  it('takes MQTT packets from mqtt-packet without a tick each: they still leave together, whole', async () => {
    const other = await connectedPair();
    try {
      const socket = coalesceWrites(other.server);
      const seen = flushes(socket);
      const parser = mqttPacket.parser();
      const topics: string[] = [];
      parser.on('packet', (p) => topics.push((p as { topic: string }).topic));
      other.client.on('data', (d) => parser.parse(d));
      // mqtt-packet corks what has `cork` and uncorks it a tick later (a nextTick per packet);
      // the wrapper holds the whole turn, so the socket shows it no cork
      let uncorks = 0;
      const uncork = socket.uncork;
      socket.uncork = () => (uncorks++, uncork.call(socket));
      for (const topic of ['state/d/update/accepted', 'state/d/update/delta']) mqttPacket.writeToStream({ cmd: 'publish', topic, payload: '{}', qos: 0, dup: false, retain: false }, socket);
      await new Promise<void>((resolve) => setImmediate(resolve));
      await new Promise<void>((resolve) => setImmediate(resolve));
      assert.equal(uncorks, 1, 'uncorked once, by the wrapper at the end of the turn, not once per packet');
      assert.equal(seen.length, 1, `both packets in one flush: ${JSON.stringify(seen)}`);
      while (topics.length < 2) await new Promise<void>((resolve) => setImmediate(resolve));
      assert.deepEqual(topics, ['state/d/update/accepted', 'state/d/update/delta']);
    } finally {
      other.close();
    }
  });

  it('an unwrapped socket flushes each tick apart (what the wrapper changes)', async () => {
    const other = await connectedPair();
    try {
      const seen = flushes(other.server);
      await writeInOneTurn(other.server);
      assert.ok(seen.length >= 2, `writes a tick apart are separate flushes without it: ${JSON.stringify(seen)}`);
    } finally {
      other.close();
    }
  });

  it("refuses a socket with its own write, which the shared write (its prototype's) would skip", async () => {
    const other = await connectedPair();
    try {
      let own = 0;
      const write = other.server.write;
      other.server.write = ((...args: Parameters<typeof write>) => (own++, write.apply(other.server, args))) as typeof write;
      assert.throws(() => coalesceWrites(other.server), /its own write or cork/);
      other.server.write('x');
      assert.equal(own, 1, 'its own write left in place');
    } finally {
      other.close();
    }
  });
});
