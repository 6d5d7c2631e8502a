/**
 * Connections refused at the process's open-file limit are logged and counted. At the limit
 * the kernel refuses accept() with EMFILE and Node says nothing (libuv accepts and closes
 * them itself): a server under `ulimit -n 256` closed 75 of 300 MQTT connections with no
 * line and no count. The real `updraft server` runs here under `ulimit -n 256` (bash, then
 * exec: the limit is the server's own), raw TCP connections are opened until it refuses some,
 * and its log and metrics are read. Linux only (/proc, ulimit).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { eventually } from '../helpers/cli.ts';

const BIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../bin/updraft.js');
const LIMIT = 256;
const MSG = 'connections refused: the process is at its open-file limit';

/** Opens `n` TCP connections at once; resolves once each is connected, with those the server closes counted as they close. */
async function openMany(port: number, n: number): Promise<{ sockets: net.Socket[]; closedByServer: () => number }> {
  let closed = 0;
  const sockets = await Promise.all(
    Array.from({ length: n }, () =>
      new Promise<net.Socket>((resolve, reject) => {
        const s = net.connect(port, '127.0.0.1');
        s.on('error', () => {}); // a reset of a refused connection: counted by 'close'
        s.once('connect', () => resolve(s));
        s.once('close', () => {
          if (!s.connecting) closed++;
        });
        s.once('error', (err) => (s.connecting ? reject(err) : undefined));
      }),
    ),
  );
  return { sockets, closedByServer: () => closed };
}

/** Waits until `count()` has not changed for 1 s. */
async function settled(count: () => number): Promise<number> {
  let last = -1;
  for (;;) {
    const now = count();
    if (now === last) return now;
    last = now;
    await new Promise((r) => setTimeout(r, 1000));
  }
}

/** The log lines (text format) of the refusal, of one listener. */
function refusalLines(log: string, listener: string): string[] {
  return log.split('\n').filter((l) => l.includes(MSG) && l.includes(` listener=${listener} `));
}

describe('connections refused at the open-file limit', { skip: process.platform !== 'linux' ? 'Linux only (/proc, ulimit)' : false }, () => {
  let dataDir: string;
  let child: ReturnType<typeof spawn>;
  let log = '';
  let mqttPort: number;
  let mqttsPort: number;
  let httpUrl: string;

  before(async () => {
    dataDir = await mkdtemp(path.join(os.tmpdir(), 'updraft-fd-limit-'));
    const args = [BIN, 'server', '--data-dir', dataDir, '--mqtt-host', '127.0.0.1', '--http-host', '127.0.0.1', '--mqtt-port', '0', '--http-port', '0', '--mqtt-tls-port', '0'];
    child = spawn('bash', ['-c', `ulimit -n ${LIMIT} && exec "$0" "$@"`, process.execPath, ...args], { env: { ...process.env } });
    child.stdout!.on('data', (d) => (log += d));
    child.stderr!.on('data', (d) => (log += d));
    await eventually(async () => (/updraft: data in/.test(log) ? true : undefined), 60_000, 'the server started');
    mqttPort = Number(/MQTT broker on mqtt:\/\/127\.0\.0\.1:(\d+)/.exec(log)![1]);
    mqttsPort = Number(/on mqtts:\/\/127\.0\.0\.1:(\d+)/.exec(log)![1]);
    httpUrl = /HTTP API and downloads on (http:\/\/\S+)/.exec(log)![1]!;
    // the limit is the server's own, not this process's
    const limits = await readFile(`/proc/${child.pid}/limits`, 'utf8');
    assert.match(limits, new RegExp(`Max open files\\s+${LIMIT}\\s`));
  });

  after(async () => {
    if (child.exitCode === null) {
      const exited = new Promise((r) => child.once('close', r));
      child.kill('SIGTERM');
      await exited;
    }
    await rm(dataDir, { recursive: true, force: true });
  });

  it('closes what it cannot serve, one WARN line per listener and burst, the others counted, and in the metrics', async () => {
    // 300 MQTT connections on a server allowed 256 files: some are refused
    const mqtt = await openMany(mqttPort, 300);
    const mqttRefused = await settled(mqtt.closedByServer);
    assert.ok(mqttRefused > 0 && mqttRefused < 300, `the server closed ${mqttRefused} of 300`);
    // with those held, the MQTTS listener has no file to spare either
    const mqtts = await openMany(mqttsPort, 10);
    const mqttsRefused = await settled(mqtts.closedByServer);
    assert.equal(mqttsRefused, 10);
    // but the operator's API answers: the MQTT listeners leave the HTTP one files of its own
    // (with one cut-off for all, every HTTP connection was refused here)
    const token = (await readFile(path.join(dataDir, 'operator-token'), 'utf8')).trim();
    const during = await fetch(`${httpUrl}/api/v1/metrics`, { headers: { authorization: `Bearer ${token}` } });
    assert.equal(during.status, 200, 'the metrics answered while devices hold the MQTT listener at its limit');
    assert.equal(((await during.json()) as { mqtt: { refusedConnections: number } }).mqtt.refusedConnections, mqttRefused + mqttsRefused);
    // and the HTTP listener has its own limit, refused past it in turn
    const http = await openMany(Number(new URL(httpUrl).port), 60);
    const httpRefused = await settled(http.closedByServer);
    assert.ok(httpRefused > 0 && httpRefused < 60, `the server closed ${httpRefused} of 60 HTTP connections`);

    // the first of each burst at once, naming the limit
    const first = refusalLines(log, 'mqtt');
    assert.equal(first.length, 1, log);
    assert.match(first[0]!, /WARN/);
    assert.match(first[0]!, new RegExp(`limit=${LIMIT} `));
    assert.doesNotMatch(first[0]!, /suppressed=/);
    assert.equal(refusalLines(log, 'mqtts').length, 1, log);
    assert.equal(refusalLines(log, 'http').length, 1, log);
    // a refused MQTTS connection is not a handshake refused for its certificate
    assert.doesNotMatch(log, /MQTTS handshake refused/);

    // the others when the 10 s end, with their count
    await eventually(async () => (refusalLines(log, 'mqtt').length === 2 ? true : undefined), 30_000, 'the count line of the MQTT refusals');
    const count = refusalLines(log, 'mqtt')[1]!;
    assert.match(count, new RegExp(`suppressed=${mqttRefused - 1}(\\s|$)`), count);
    await eventually(async () => (refusalLines(log, 'http').length === 2 ? true : undefined), 30_000, 'the count line of the HTTP refusals');
    assert.match(refusalLines(log, 'http')[1]!, new RegExp(`suppressed=${httpRefused - 1}(\\s|$)`));

    // files free again: the server serves, and counted every refusal
    for (const s of [...mqtt.sockets, ...mqtts.sockets, ...http.sockets]) s.destroy();
    await eventually(async () => ((await readdir(`/proc/${child.pid}/fd`)).length < LIMIT / 2 ? true : undefined), 30_000, 'the server let go of the connections');
    const res = await fetch(`${httpUrl}/api/v1/metrics`, { headers: { authorization: `Bearer ${token}` } });
    assert.equal(res.status, 200);
    const m = (await res.json()) as { mqtt: { refusedConnections: number; refusedAtFileLimit: number }; api: { refusedConnections: number } };
    assert.equal(m.mqtt.refusedConnections, mqttRefused + mqttsRefused);
    // every one of them at the file limit, none by admission: told apart from the limits at work
    assert.equal(m.mqtt.refusedAtFileLimit, mqttRefused + mqttsRefused);
    assert.equal(m.api.refusedConnections, httpRefused);
    const text = await (await fetch(`${httpUrl}/api/v1/metrics`, { headers: { authorization: `Bearer ${token}`, accept: 'text/plain' } })).text();
    assert.match(text, new RegExp(`^updraft_http_refused_connections_total ${httpRefused}$`, 'm'));
    assert.match(text, new RegExp(`^updraft_mqtt_refused_connections_total ${mqttRefused + mqttsRefused}$`, 'm'));
    assert.match(text, new RegExp(`^updraft_mqtt_refused_at_file_limit_total ${mqttRefused + mqttsRefused}$`, 'm'));
  });
});
