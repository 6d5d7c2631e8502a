/**
 * The command line's `debug` loggers: disabled ones are empty functions (no rest-arguments
 * array per call, src/util/quiet-debug.ts), and `DEBUG` set at start still turns them on in a
 * real server process.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import mqtt from 'mqtt';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { startCli } from '../helpers/cli.ts';
import { quietDisabledDebug } from '../../src/util/quiet-debug.ts';

const require = createRequire(import.meta.url);

test('after quietDisabledDebug(), a logger of a disabled namespace is an empty function, an enabled one is debug\'s own', () => {
  const before = require('debug');
  before.disable();
  quietDisabledDebug();
  const debug = require('debug');
  assert.notEqual(debug, before, 'the module cache now hands out the wrapped factory');
  const off = debug('mqtt-packet:parser');
  assert.equal(off.enabled, false);
  assert.equal(off.namespace, 'mqtt-packet:parser');
  // debug's own loggers carry their per-logger state (colors, the time of the last call): an empty one has none
  assert.equal('useColors' in off, false, 'a disabled logger is the empty function');
  assert.equal(off('a %s', 'b'), undefined);
  assert.equal(off.extend('x').namespace, 'mqtt-packet:parser:x');
  assert.equal(off.extend('x').enabled, false);
  // the factory's API is debug's: enabling a namespace makes its next loggers the real ones
  debug.enable('quiet-test:*');
  const on = debug('quiet-test:one');
  assert.equal(on.enabled, true);
  assert.equal('useColors' in on, true, 'an enabled logger is debug\'s own');
  let logged = '';
  on.log = (...args: unknown[]) => (logged += args.join(' '));
  on('hello %s', 'there');
  assert.match(logged, /quiet-test:one hello %s there/);
  debug.disable();
  // and mqtt-packet parses as before with it
  const packet = require('mqtt-packet');
  const parser = packet.parser();
  const seen: unknown[] = [];
  parser.on('packet', (p: unknown) => seen.push(p));
  parser.parse(packet.generate({ cmd: 'publish', topic: 'a/b', payload: Buffer.from('x'), qos: 0, retain: false, dup: false }));
  assert.equal((seen[0] as { topic: string }).topic, 'a/b');
});

test('DEBUG set when the server starts still turns on mqtt-packet\'s logger in the real process', async () => {
  const dataDir = await mkdtemp(path.join(os.tmpdir(), 'updraft-quiet-debug-'));
  const server = startCli(['server', '--data-dir', dataDir, '--mqtt-port', '0', '--mqtt-tls-port', '-1', '--http-port', '0', '--mqtt-host', '127.0.0.1', '--http-host', '127.0.0.1'], { env: { DEBUG: 'mqtt-packet:parser' } });
  try {
    const url = (await server.waitFor(/MQTT broker on (mqtt:\/\/\S+)/))[1]!;
    assert.doesNotMatch(server.output(), /_parseConnect/, 'no CONNECT parsed yet');
    // a CONNECT with a wrong password is parsed (and refused): the parser's debug lines are written
    const client = mqtt.connect(url, { username: 'nobody', password: 'wrong', reconnectPeriod: 0, connectTimeout: 5000 });
    await new Promise<void>((resolve) => {
      client.once('error', () => resolve());
      client.once('close', () => resolve());
    });
    client.end(true);
    await server.waitFor(/mqtt-packet:parser _parseConnect/);
  } finally {
    await server.kill('SIGKILL');
    await rm(dataDir, { recursive: true, force: true });
  }
});

test("a real server's mqtt-packet loggers are the empty ones: enabled late, they write nothing", async () => {
  // an ES module loaded before the server (node --import) that, at SIGUSR2, enables
  // mqtt-packet's namespaces as debug's API allows: a logger of debug's own (made while they
  // were off) then writes; the empty ones the updraft command made cannot
  const dir = await mkdtemp(path.join(os.tmpdir(), 'updraft-quiet-debug-'));
  const packetDir = path.dirname(require.resolve('mqtt-packet'));
  const hook = path.join(dir, 'enable-late.mjs');
  await writeFile(
    hook,
    `import { createRequire } from 'node:module';
process.on('SIGUSR2', () => {
  createRequire(${JSON.stringify(packetDir + '/')})('debug').enable('mqtt-packet:*');
  process.stderr.write('hook: debug enabled\\n');
});
`,
  );
  const bin = fileURLToPath(new URL('../../bin/updraft.js', import.meta.url));
  const env = { ...process.env };
  delete env.DEBUG;
  const child = spawn(process.execPath, ['--import', hook, bin, 'server', '--data-dir', path.join(dir, 'data'), '--mqtt-port', '0', '--mqtt-tls-port', '-1', '--http-port', '0', '--mqtt-host', '127.0.0.1', '--http-host', '127.0.0.1'], { env });
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (out += d));
  const waitFor = async (re: RegExp): Promise<RegExpMatchArray> => {
    for (let i = 0; i < 300; i++) {
      const m = out.match(re);
      if (m) return m;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`no ${re} in: ${out}`);
  };
  try {
    const url = (await waitFor(/MQTT broker on (mqtt:\/\/\S+)/))[1]!;
    child.kill('SIGUSR2');
    await waitFor(/hook: debug enabled/);
    // a CONNECT the server parses (and refuses: no such device)
    const client = mqtt.connect(url, { username: 'nobody', password: 'wrong', reconnectPeriod: 0, connectTimeout: 5000 });
    const refused = await new Promise<string>((resolve) => {
      client.once('error', (err) => resolve(err.message));
      client.once('close', () => resolve('closed'));
    });
    client.end(true);
    assert.match(refused, /Not authorized|Bad username|closed/i, 'the server parsed the CONNECT and answered it');
    // the parser's loggers, enabled now, were made empty at start: nothing written
    await new Promise((r) => setTimeout(r, 300));
    assert.doesNotMatch(out, /mqtt-packet:/, 'a logger made while mqtt-packet was off stays silent');
  } finally {
    child.kill('SIGKILL');
    await rm(dir, { recursive: true, force: true });
  }
});
