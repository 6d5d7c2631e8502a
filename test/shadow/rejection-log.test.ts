/**
 * A device's shadow requests refused with a 4xx are logged with the device, the shadow, the
 * code and the message, never the payload, once per device and code a minute with the count
 * of the others. Before, they were only counted (`shadow.rejections`), even at debug level.
 * Real server, real MQTT over TCP, its log captured.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { RejectionLog } from '../../src/shadow/rejection-log.ts';
import { createLogger } from '../../src/util/logger.ts';
import { connectDevice, type TestClient } from '../helpers/mqtt-client.ts';
import { startTestServer, type TestServer } from '../helpers/server.ts';

type Line = { level: string; component?: string; msg: string; deviceId?: string; shadow?: string; op?: string; code?: number; error?: string; suppressed?: number; rejections?: number };

/** A JSON logger (at debug level unless said), the lines it wrote, and a wait for the line count to reach `n` (resolved as the line is written). */
function captured(level: 'debug' | 'info' = 'debug'): { logger: ReturnType<typeof createLogger>; lines: Line[]; raw: string[]; reach(n: number): Promise<void> } {
  const lines: Line[] = [];
  const raw: string[] = [];
  let waiter: { n: number; resolve: () => void } | undefined;
  const logger = createLogger({
    level,
    format: 'json',
    write: (l) => {
      raw.push(l);
      lines.push(JSON.parse(l));
      if (waiter && lines.length >= waiter.n) waiter.resolve();
    },
  });
  const reach = (n: number) => (lines.length >= n ? Promise.resolve() : new Promise<void>((resolve) => (waiter = { n, resolve })));
  return { logger, lines, raw, reach };
}

describe('shadow rejection log', () => {
  const { logger, lines, raw } = captured();
  let ts: TestServer;
  let dev: TestClient;
  let other: TestClient;
  before(async () => {
    ts = await startTestServer({ logger, flags: { 'shadow-max-bytes': 1024 } });
    dev = await connectDevice(ts, 'rl-1');
    other = await connectDevice(ts, 'rl-2');
    for (const [c, id] of [[dev, 'rl-1'], [other, 'rl-2']] as const) await c.subscribe(`state/${id}/+/rejected`, `state/${id}/+/accepted`, `state/${id}/shadow/+/+/rejected`);
  });
  after(async () => {
    await dev?.end();
    await other?.end();
    await ts?.close();
  });

  const rejected = (deviceId?: string) => lines.filter((l) => l.msg === 'shadow request rejected' && (deviceId === undefined || l.deviceId === deviceId));

  /** Publishes a raw payload and resolves with the code of its rejection (the next one on its topic: one that is not JSON has no token to echo). */
  async function refused(c: TestClient, topic: string, payload: string): Promise<number> {
    const seen = c.log.length;
    const answer = c.next((m) => m.topic === `${topic}/rejected` && c.log.indexOf(m) >= seen);
    await c.publish(topic, payload);
    return (await answer).body.code;
  }

  it('writes each code once per device with what was wrong, at its level, and never the payload', async () => {
    const secret = 'SECRET-IN-PAYLOAD';
    // 400: not JSON (a device build sending malformed reports)
    assert.equal(await refused(dev, 'state/rl-1/update', `{"state":{"reported":{"k":"${secret}"}},"clientToken":"t400"`), 400);
    // 403: a device writing the operator's update command
    assert.equal(await refused(dev, 'state/rl-1/update', JSON.stringify({ state: { desired: { software: { name: 'fw', version: secret } } }, clientToken: 't403' })), 403);
    // 413: too large
    assert.equal(await refused(dev, 'state/rl-1/shadow/cfg/update', JSON.stringify({ state: { reported: { k: secret + 'x'.repeat(2000) } }, clientToken: 't413' })), 413);
    // 409: a version conflict
    const created = await dev.request('state/rl-1/update', { state: { reported: { ok: 1 } } });
    assert.equal(created.topic, 'state/rl-1/update/accepted');
    assert.equal(await refused(dev, 'state/rl-1/update', JSON.stringify({ state: { reported: { k: secret } }, version: 99, clientToken: 't409' })), 409);

    const byCode = new Map(rejected('rl-1').map((l) => [l.code, l]));
    assert.deepEqual([...byCode.keys()].sort(), [400, 403, 409, 413]);
    assert.deepEqual([byCode.get(400)!.level, byCode.get(403)!.level, byCode.get(409)!.level, byCode.get(413)!.level], ['info', 'warn', 'debug', 'info']);
    const forbidden = byCode.get(403)!;
    assert.deepEqual([forbidden.deviceId, forbidden.shadow, forbidden.op], ['rl-1', '', 'update']);
    assert.match(forbidden.error!, /operators only/);
    assert.equal(byCode.get(413)!.shadow, 'cfg');
    assert.match(byCode.get(413)!.error!, /exceeds the maximum size/);
    assert.equal(raw.filter((l) => l.includes(secret)).length, 0, 'no line holds the payload');
  });

  it('writes a device in a loop once, and its count when the window ends (here the server stops); another device has its own line', async () => {
    const before400 = rejected('rl-1').filter((l) => l.code === 400).length;
    for (let i = 0; i < 20; i++) assert.equal(await refused(dev, 'state/rl-1/update', `{"clientToken":"loop-${i}",`), 400);
    assert.equal(rejected('rl-1').filter((l) => l.code === 400).length, before400, '20 more rejections in the minute, no line more');
    assert.equal(await refused(other, 'state/rl-2/update', '{"clientToken":"o-1",'), 400);
    assert.equal(rejected('rl-2').length, 1, 'another device is named at once');
    await dev.end();
    await other.end();
    await ts.stop();
    const counts = rejected('rl-1').filter((l) => l.suppressed !== undefined);
    assert.deepEqual(counts.map((l) => [l.code, l.suppressed, l.level]), [[400, 20, 'info']], 'the count of the loop, written once');
  });
});

describe('rejection log bounds', () => {
  it('counts the devices past its bound per code, and writes a looping device once per window', async () => {
    const { logger, lines, reach } = captured();
    const log = new RejectionLog(logger, { maxKeys: 2, windowMs: 50 });
    const alive = setInterval(() => {}, 1_000); // its timers are unref'd
    after(() => clearInterval(alive));
    for (const id of ['a', 'b', 'c', 'd', 'e']) log.rejected({ deviceId: id, shadow: '', op: 'update', code: 403, message: 'no' });
    assert.deepEqual(lines.map((l) => l.deviceId), ['a', 'b'], 'two devices named');
    await reach(3); // the window ends
    assert.deepEqual(lines.slice(2).map((l) => [l.code, l.rejections, l.level]), [[403, 3, 'warn']], 'the three others counted in one line');
    // a device in a loop across windows: its first line, then only its counts
    lines.length = 0;
    log.rejected({ deviceId: 'a', shadow: '', op: 'update', code: 400, message: 'bad' });
    log.rejected({ deviceId: 'a', shadow: '', op: 'update', code: 400, message: 'bad' });
    // the count of the first window; the next comes in the window after it (this continuation
    // runs right after the timer that wrote the count, before any other)
    await reach(2);
    log.rejected({ deviceId: 'a', shadow: '', op: 'update', code: 400, message: 'bad' });
    log.close();
    assert.deepEqual(lines.map((l) => l.suppressed), [undefined, 1, 1], 'the next window’s rejection is counted, not written again');
  });
});

describe('rejection log room for 403s', () => {
  const flood = (log: RejectionLog, n: number) => {
    for (let i = 0; i < n; i++) log.rejected({ deviceId: `busy-${i}`, shadow: '', op: 'update', code: 429, message: 'Too many requests' });
  };
  const forbidden = { deviceId: 'intruder', shadow: '', op: 'update', code: 403, message: 'desired.software can be set by operators only' };

  it('names a device refused with 403 after 1,500 devices refused with 429 at the default level (info), in that window and the next', async () => {
    const { logger, lines, reach } = captured('info');
    const log = new RejectionLog(logger, { windowMs: 50 }); // the default bound: 1,000
    const alive = setInterval(() => {}, 1_000);
    after(() => clearInterval(alive));
    flood(log, 1_500);
    flood(log, 1_500); // still refused: counted, were they tracked
    log.rejected(forbidden);
    assert.deepEqual(lines.map((l) => [l.level, l.deviceId, l.code]), [['warn', 'intruder', 403]], 'the 403 named; no 429 line at info');
    // the flood goes on into the next window; another device writes the software
    await new Promise((r) => setTimeout(r, 80));
    flood(log, 1_500);
    log.rejected({ ...forbidden, deviceId: 'intruder-2' });
    await reach(2);
    log.close();
    assert.deepEqual(lines.map((l) => [l.level, l.deviceId, l.code]), [['warn', 'intruder', 403], ['warn', 'intruder-2', 403]]);
  });

  it('keeps room for 403s when 429s are written too (debug level)', () => {
    const { logger, lines } = captured('debug');
    const log = new RejectionLog(logger, { maxKeys: 10, windowMs: 60_000 });
    flood(log, 50);
    log.rejected(forbidden);
    log.close();
    assert.equal(lines.filter((l) => l.code === 429 && l.deviceId !== undefined).length, 10, 'ten 429s named, as the bound says');
    assert.deepEqual(lines.filter((l) => l.code === 403).map((l) => [l.level, l.deviceId]), [['warn', 'intruder']], 'the 403 named, not counted among the devices not named');
    assert.deepEqual(lines.filter((l) => l.rejections !== undefined).map((l) => [l.code, l.rejections]), [[429, 40]]);
  });
});
