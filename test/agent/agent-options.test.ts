/**
 * The UpdateAgent's constructor checks its options (the library's public API, called from
 * JavaScript and config files past the type checker): every problem named at once, one line
 * each, in one UpdraftError CONFIG; nothing is connected, nothing read.
 */
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Aedes } from 'aedes';
import { describe, it } from 'node:test';
import { MemoryAgentStateStore, SimulatedInstaller, UpdateAgent, UpdraftError, type UpdateAgentOptions } from '../../src/agent/index.ts';
import { silentLogger } from '../../src/util/logger.ts';

const ed25519 = generateKeyPairSync('ed25519');
const valid = (): UpdateAgentOptions => ({
  deviceId: 'dev-1',
  brokerUrl: 'mqtt://127.0.0.1:1883',
  installer: new SimulatedInstaller({ initial: { name: 'fw', version: '1.0.0' } }),
  stateDir: '/var/lib/updraft',
  signingPublicKey: ed25519.publicKey.export({ type: 'spki', format: 'pem' }).toString(),
});

/** The problem lines of the error `new UpdateAgent(opts)` throws (it must throw UpdraftError CONFIG). */
function problemsOf(opts: unknown): string[] {
  let thrown: unknown;
  try {
    new UpdateAgent(opts as UpdateAgentOptions);
  } catch (err) {
    thrown = err;
  }
  assert.ok(thrown instanceof UpdraftError, `expected an UpdraftError, got ${String(thrown)}`);
  assert.equal(thrown.code, 'CONFIG');
  const [first, ...lines] = thrown.message.split('\n');
  assert.equal(first, 'invalid UpdateAgent options:');
  return lines.map((l) => l.trim());
}

describe('UpdateAgent over a Unix socket', () => {
  it('connects with mqtt+unix:// to a real broker on that socket, as before options were checked', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'updraft-unix-'));
    const socket = path.join(dir, 'broker.sock');
    const broker = await Aedes.createBroker();
    const server = net.createServer(broker.handle);
    await new Promise<void>((resolve) => server.listen(socket, resolve));
    const connected = new Promise<string>((resolve) => broker.on('client', (c) => resolve(c.id)));
    let agent: UpdateAgent | undefined;
    try {
      // made inside the try: a constructor that refuses the URL must still close the broker, or the test process never ends
      agent = new UpdateAgent({ ...valid(), brokerUrl: `mqtt+unix://${socket}`, stateStore: new MemoryAgentStateStore(), logger: silentLogger, allowUnsigned: true, signingPublicKey: undefined });
      await agent.start();
      assert.equal(await connected, 'dev-1');
    } finally {
      await agent?.stop();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await new Promise<void>((resolve) => broker.close(() => resolve()));
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('UpdateAgent options', () => {
  it('are taken when valid, the documented minimum and every option set', () => {
    new UpdateAgent(valid());
    new UpdateAgent({ ...valid(), signingPublicKey: ed25519.publicKey });
    new UpdateAgent({ deviceId: 'dev-1', brokerUrl: 'mqtts://updraft.local:8883', installer: valid().installer, stateDir: 'state', allowUnsigned: true });
    // every scheme mqtt.js connects with in Node.js: ssl is its TLS too, +unix a Unix socket
    for (const brokerUrl of ['ssl://updraft.local:8883', 'tls://updraft.local:8883', 'wss://updraft.local/mqtt', 'mqtt+unix:///run/updraft/broker.sock', 'mqtts+unix:///run/updraft/broker.sock']) new UpdateAgent({ ...valid(), brokerUrl });
    new UpdateAgent({
      ...valid(),
      username: 'dev-1',
      password: 's3cret',
      renewPassword: () => undefined,
      reloadTls: () => undefined,
      certificateRenewal: { renewBeforeDays: 30, save: async () => {} },
      rootPublicKey: ed25519.publicKey.export({ type: 'spki', format: 'pem' }).toString(),
      allowUnsigned: false,
      downloadAuth: 'token',
      installGate: async () => ({ go: true }),
      installGateRetryMs: 60_000,
      installGateMaxWaitMs: 86_400_000,
      stateStore: new MemoryAgentStateStore(),
      download: async (o) => ({ file: o.file, resumedFrom: 0 }),
      logger: silentLogger,
      requestTimeoutMs: 5000,
      requestAttempts: 1,
      retryDelayMs: 1,
      maxRetryDelayMs: 60_000,
      progressStep: 0,
      progressIntervalMs: 0,
      urlMarginMs: 0,
      maxUrlRefreshes: 0,
      downloadSettings: { retryForMs: 0, maxAttempts: 2, retryDelayMs: 5, maxRetryDelayMs: 1000, maxBytesPerSecond: 500 },
      mqttOptions: { reconnectPeriod: 0, keepalive: 60, clientId: 'dev-1', cert: 'PEM', key: 'PEM' },
      deviceType: 'rpi4',
      timeZone: 'Europe/Madrid',
      now: () => Date.now(),
      // left out, as a spread of optional settings leaves them
      signingPublicKey: undefined,
    });
  });

  it("name every problem at once, one line each: QA's options", () => {
    const problems = problemsOf({
      deviceId: 42,
      installer: undefined,
      stateStore: {},
      downloadAuth: 'tokn',
      requestTimeoutMs: -1,
      password: 'hunter2',
      allowUnsigned: true,
    });
    assert.deepEqual(problems, [
      'brokerUrl is required: the broker\'s URL, like mqtt://host:1883 or mqtts://host:8883 (there is no default)',
      'installer is required: an Installer (SlotInstaller, SimulatedInstaller, or your own with current() and install())',
      "stateDir is required: the directory that holds the agent's state and downloads",
      'deviceId must be a string of 1 to 128 characters of letters, digits, _ . : -, other than "." and "..", got 42',
      'stateStore must be an AgentStateStore (an object with load() and save(state): FileAgentStateStore, MemoryAgentStateStore), got object',
      "downloadAuth must be 'url' or 'token', got \"tokn\"",
      'requestTimeoutMs must be a number of milliseconds from 1 to 2147483647 (about 24.8 days), got -1',
    ]);
  });

  it('name each documented option given a value of the wrong type or out of range', () => {
    const bad: { [K in keyof UpdateAgentOptions]-?: unknown[] } = {
      deviceId: ['', 'a/b', '..', 'x'.repeat(129)],
      brokerUrl: ['localhost:1883', 'http://broker:1883', 'mqtt://', 'mqtt+unix://', 7],
      username: [1],
      password: [Buffer.from('x')],
      renewPassword: ['secret'],
      reloadTls: [{ ca: 'x' }],
      connectionErrorHint: ['hint'],
      certificateRenewal: [{}, { save: async () => {}, renewBeforeDays: 0 }, { save: async () => {} }],
      signingPublicKey: ['not a key', generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey, ed25519.privateKey, 1],
      rootPublicKey: ['-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n'],
      allowUnsigned: ['yes'],
      downloadAuth: ['URL'],
      installGate: [true],
      installGateRetryMs: [0, 2 ** 31],
      installGateMaxWaitMs: [0, Infinity],
      installer: [{}, { current: async () => undefined }, { current: async () => undefined, install: async () => {}, recover: 1 }, 'slots'],
      stateDir: [''],
      stateStore: [new Map()],
      download: [{}],
      logger: [console, {}],
      requestTimeoutMs: [0, NaN, '5000'],
      requestAttempts: [0, 1.5],
      retryDelayMs: [0, 2 ** 31],
      maxRetryDelayMs: [-5],
      progressStep: [1.5, -0.1],
      progressIntervalMs: [-1],
      urlMarginMs: [-1],
      maxUrlRefreshes: [-1, 0.5],
      downloadSettings: [[], { retryForMs: -1 }, { maxAttempts: 0 }, { retryDelayMs: 0 }, { maxRetryDelayMs: 2 ** 32 }, { maxBytesPerSecond: 0 }, { maxBytesPerSec: 1000 }],
      mqttOptions: ['keepalive=60', { reconnectPeriod: -1 }, { clientId: 'other' }],
      deviceType: ['a b'],
      timeZone: ['Mars/Olympus', 1],
      now: [Date.now()],
    };
    for (const [name, values] of Object.entries(bad)) {
      for (const value of values) {
        // a key stands in for a signing key that is refused, so the missing-key line is not the one seen
        const problems = problemsOf({ ...valid(), allowUnsigned: true, [name]: value });
        assert.equal(problems.length, 1, `${name}=${String(value)}: ${problems.join(' | ')}`);
        assert.match(problems[0]!, new RegExp(`^(unknown option )?${name}\\b`), `${name}=${String(value)}`);
      }
    }
  });

  it('refuses an agent with no signing key unless unsigned software is allowed, and unknown options (typos)', () => {
    const { signingPublicKey: _, ...unsigned } = valid();
    assert.deepEqual(problemsOf({ ...unsigned, brokerURL: 'mqtt://x:1883', requestTimeout: 5 }), [
      'unknown option brokerURL: did you mean brokerUrl?',
      'unknown option requestTimeout',
      "signingPublicKey is required (the operator's public key, SPKI PEM: updraft keys export-public), or rootPublicKey, or allowUnsigned: true to accept unsigned software (insecure)",
    ]);
  });

  it('refuses options that are no object, and never quotes a password', () => {
    assert.deepEqual(problemsOf(undefined), ['the options must be an object, got undefined']);
    assert.deepEqual(problemsOf('mqtt://x'), ['the options must be an object, got "mqtt://x"']);
    const problems = problemsOf({ ...valid(), brokerUrl: 'mqtp://dev-1:hunter2@broker:1883', password: 42 });
    assert.deepEqual(problems, [
      'brokerUrl must be a URL like mqtt://host:1883 (mqtt, mqtts, tcp, tls, ssl, ws, wss, mqtt+unix, mqtts+unix), got "mqtp://dev-1:***@broker:1883"',
      'password must be a string, got number',
    ]);
  });
});
