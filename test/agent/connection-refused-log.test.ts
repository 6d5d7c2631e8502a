/**
 * A device the broker refuses for good (CONNACK 4: an unregistered id, a wrong secret, or
 * another broker than the server's) is said in words an operator can act on, and said again
 * while it lasts: the daemon logged the broker's "Bad username or password" once, then
 * retried in silence; one that a broker without an Updraft server admits (the machine's own
 * Mosquitto) said only a timeout (QA of the quick start, 2026-12-07). A real server's
 * embedded broker over TCP, a real Mosquitto; the real `updraft agent` daemon, and the agent
 * library with a clock the test moves.
 */
import assert from 'node:assert/strict';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { MemoryAgentStateStore, SimulatedInstaller, UpdateAgent } from '../../src/agent/index.ts';
import { REPEATED_ERROR_LOG_MS } from '../../src/agent/agent.ts';
import type { Logger } from '../../src/util/logger.ts';
import { eventually, startCli } from '../helpers/cli.ts';
import { freePort } from '../helpers/free-port.ts';
import { findMosquitto, mosquittoUnavailable, runMosquitto } from '../helpers/mosquitto.ts';
import { startTestServer, type TestServer } from '../helpers/server.ts';

/** A logger that keeps its WARN lines (message and fields). */
function keepingLogger(lines: { msg: string; fields: Record<string, unknown> }[]): Logger {
  const logger: Logger = {
    debug: () => undefined,
    info: () => undefined,
    warn: (msg, fields = {}) => void lines.push({ msg, fields }),
    error: (msg, fields = {}) => void lines.push({ msg, fields }),
    enabled: () => true,
    child: () => logger,
  };
  return logger;
}

describe('a device the broker refuses', () => {
  let ts: TestServer;
  let dir: string;
  before(async () => {
    ts = await startTestServer();
    dir = await mkdtemp(path.join(os.tmpdir(), 'updraft-refused-'));
  });
  after(async () => {
    await ts.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('the daemon names what to check: the broker, the registration, where its secret came from', async () => {
    const agent = startCli(['agent', '--device', 'ghost-1', '--install-dir', path.join(dir, 'ghost-1'), '--broker', ts.mqttUrl, '--password', 'not-its-secret', '--insecure-allow-unsigned']);
    try {
      const [line] = await agent.waitFor(/.*mqtt error.*/, 60_000);
      assert.match(line, /Bad username or password \(the broker at mqtt:\/\/127\.0\.0\.1:\d+ refused ghost-1 and its secret \(--password\): is it the Updraft server's broker \(--broker\), is ghost-1 registered there and not revoked \(updraft device show ghost-1\)/, `the broker's words, then the hint: ${line}`);
      assert.ok(!line.includes('not-its-secret'), `the secret itself is not logged: ${line}`);
    } finally {
      await agent.kill();
    }
  });

  it('the same refusal is said again every REPEATED_ERROR_LOG_MS while it lasts, with the attempts it ended', async () => {
    let now = Date.parse('2026-12-07T12:00:00Z');
    const lines: { msg: string; fields: Record<string, unknown> }[] = [];
    const agent = new UpdateAgent({
      deviceId: 'ghost-2',
      username: 'ghost-2',
      password: 'not-its-secret',
      brokerUrl: ts.mqttUrl,
      installer: new SimulatedInstaller({ initial: { name: 'fw', version: '1.0.0' }, durationMs: 10 }),
      stateStore: new MemoryAgentStateStore(),
      stateDir: path.join(dir, 'ghost-2'),
      logger: keepingLogger(lines),
      allowUnsigned: true,
      maxRetryDelayMs: 200,
      mqttOptions: { reconnectPeriod: 50 },
      now: () => now,
    });
    const refusals = () => lines.filter((l) => l.msg.startsWith('mqtt error'));
    try {
      await agent.start().catch(() => undefined);
      await eventually(async () => (refusals().length >= 1 ? true : undefined), 30_000, 'the first refusal logged');
      assert.match(String(refusals()[0]!.fields.error), /Bad username or password/, 'the first line is the refusal');
      // further attempts within the interval add no line
      const attempts = () => (agent as unknown as { lastErrorRepeats: number }).lastErrorRepeats;
      await eventually(async () => (attempts() >= 3 ? true : undefined), 30_000, 'three more refused attempts');
      assert.equal(refusals().length, 1, `no line more within the interval: ${JSON.stringify(refusals())}`);
      // the interval passes on the agent's clock: the next refused attempt is said again
      now += REPEATED_ERROR_LOG_MS;
      const again = await eventually(async () => refusals()[1], 30_000, 'the refusal said again');
      assert.equal(again.msg, 'mqtt error, still', 'said as still going on');
      assert.match(String(again.fields.error), /Bad username or password/, 'the same error');
      assert.equal(again.fields.since, '2026-12-07T12:00:00.000Z', 'since when');
      assert.ok(Number(again.fields.attempts) >= 5, `how many attempts it ended: ${again.fields.attempts}`);
      // and not again before another interval
      const before = attempts();
      await eventually(async () => (attempts() >= before + 2 ? true : undefined), 30_000, 'two more refused attempts');
      assert.equal(refusals().length, 2, 'one line per interval');
    } finally {
      await agent.stop();
    }
  });

  it('admitted by a broker with no Updraft server behind it, the catch-up timeout names the broker to check', async (t) => {
    const found = findMosquitto();
    if (!found.ok) return t.skip(mosquittoUnavailable(found.reason, 'a broker with no Updraft server'));
    const mdir = await mkdtemp(path.join(os.tmpdir(), 'updraft-bare-mosquitto-'));
    const port = await freePort();
    await writeFile(path.join(mdir, 'mosquitto.conf'), `listener ${port} 127.0.0.1\nallow_anonymous true\npersistence false\n`);
    await chmod(mdir, 0o755);
    const broker = await runMosquitto(found.bin, mdir, [port]);
    const lines: { msg: string; fields: Record<string, unknown> }[] = [];
    const agent = new UpdateAgent({
      deviceId: 'lost-1',
      brokerUrl: `mqtt://127.0.0.1:${port}`,
      installer: new SimulatedInstaller({ initial: { name: 'fw', version: '1.0.0' }, durationMs: 10 }),
      stateStore: new MemoryAgentStateStore(),
      stateDir: path.join(dir, 'lost-1'),
      logger: keepingLogger(lines),
      allowUnsigned: true,
      requestTimeoutMs: 200,
      requestAttempts: 1,
      mqttOptions: { reconnectPeriod: 50 },
    });
    try {
      await agent.start().catch(() => undefined);
      const line = await eventually(async () => lines.find((l) => l.msg.startsWith('catch-up after connect failed')), 30_000, 'the catch-up failure');
      assert.match(String(line.fields.error), /no answer to get within 200 ms/, 'the timeout');
      assert.equal(line.fields.hint, `no device state replica answered on state/lost-1/get: is mqtt://127.0.0.1:${port} the Updraft server's broker (--broker), and is the server up?`, 'the broker to check');
    } finally {
      await agent.stop();
      await broker.stop();
    }
  });
});
