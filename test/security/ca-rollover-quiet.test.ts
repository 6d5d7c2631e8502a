/**
 * A CA rollover as the log and the metrics show it (docs/security.md "When the CA nears its
 * end"). While the next CA is prepared and not switched to, every agent holding it asks to move
 * and is told "not yet" (409): the expected state for weeks, said in one line an hour at most
 * with a count, not a WARN per request; other refusals stay WARNs. After the switch, the
 * devices renewed off the previous CA are counted in /metrics (JSON and Prometheus). A real
 * server, real MQTTS clients sending renewal requests, real `updraft ca` processes.
 */
import assert from 'node:assert/strict';
import { createPrivateKey, sign } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { createLogger } from '../../src/util/logger.ts';
import { runCli } from '../helpers/cli.ts';
import { TestClient } from '../helpers/mqtt-client.ts';
import { registerDevice, startTestServer, type TestServer } from '../helpers/server.ts';
import { forgeCsr } from '../helpers/csr.ts';

type Line = Record<string, unknown>;
const parsed = (lines: string[]): Line[] => lines.map((l) => JSON.parse(l) as Line);

/** A CSR for a fresh RSA key, naming `cn`, and that key (PEM). */
const csrFor = (cn: string, bits = 2048): { csr: string; key: string } => forgeCsr(cn, { bits });

/** A renewal request as the agent sends it (agent/certificate-renewer.ts), proven by the current key. */
function renewal(deviceId: string, pair: { certificate: string; privateKey: string }, reason?: string): Record<string, unknown> {
  const { csr } = csrFor(deviceId);
  return { csr, certificate: pair.certificate, signature: sign('sha256', Buffer.from(csr), createPrivateKey(pair.privateKey)).toString('base64'), ...(reason !== undefined ? { reason } : {}) };
}

describe('CA rollover: the "not yet" refusals said once, the moves counted', () => {
  const dirs: string[] = [];
  const servers: TestServer[] = [];
  const tmp = async (prefix: string) => {
    const d = await mkdtemp(path.join(os.tmpdir(), prefix));
    dirs.push(d);
    return d;
  };
  const start = async (dataDir: string, lines: string[]) => {
    const ts = await startTestServer({ dataDir, logger: createLogger({ level: 'info', format: 'json', write: (l) => lines.push(l) }) });
    servers.push(ts);
    return ts;
  };
  after(async () => {
    for (const s of servers) await s.stop().catch(() => {});
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });

  it('a burst of early move requests from several devices gives one info line with the count; another refusal is still a WARN', async () => {
    const dataDir = await tmp('updraft-rollover-quiet-');
    const lines: string[] = [];
    const ts = await start(dataDir, lines);
    const prepared = await runCli(['ca', 'rollover', '--prepare', '--data-dir', dataDir]);
    assert.equal(prepared.code, 0, prepared.stderr);
    const url = `mqtts://127.0.0.1:${ts.server.broker.tlsPort}`;
    const ca = ts.server.security.ca.certificate;
    for (const id of ['q-1', 'q-2', 'q-3']) {
      await registerDevice(ts, id);
      const pair = await ts.server.security.ca.issueDeviceCertificate(id);
      const client = await TestClient.connect(url, id, { ca, cert: pair.certificate, key: pair.privateKey });
      try {
        await client.subscribe(`state/${id}/certificate/renew/+`);
        for (let i = 0; i < 3; i++) {
          const r = await client.request(`state/${id}/certificate/renew`, renewal(id, pair, 'newer-ca'));
          assert.equal(r.topic, `state/${id}/certificate/renew/rejected`);
          assert.equal((r.body as { code: number }).code, 409);
          assert.match((r.body as { message: string }).message, /already of this server's CA/);
        }
        if (id === 'q-3') {
          // a request that is not proven by the current key: a fault, still a WARN of its own
          const bad = { ...renewal(id, pair, 'newer-ca'), signature: Buffer.from('x'.repeat(256)).toString('base64') };
          const r = await client.request(`state/${id}/certificate/renew`, bad);
          assert.equal((r.body as { code: number }).code, 403);
        }
      } finally {
        await client.end();
      }
    }
    const all = parsed(lines);
    const notYet = all.filter((l) => String(l.msg).startsWith('certificate moves to a newer CA refused as "not yet"'));
    assert.equal(notYet.length, 1, `one line for 9 refusals:\n${lines.join('\n')}`);
    assert.equal(notYet[0]!.level, 'info');
    assert.equal(notYet[0]!.devices, 1, 'the first is said at once; the devices after it are counted into the next line, an hour later at the earliest');
    assert.equal(notYet[0]!.deviceIds, 'q-1', 'named');
    const refusedLines = all.filter((l) => l.msg === 'certificate renewal refused');
    assert.equal(refusedLines.length, 1, lines.join('\n'));
    assert.equal(refusedLines[0]!.level, 'warn');
    assert.match(String(refusedLines[0]!.reason), /not signed by the current certificate's key/);
    assert.deepEqual(all.filter((l) => l.msg === 'device certificate renewed'), [], 'nothing signed');
  });

  it('the devices renewed off the previous CA are counted in /metrics (JSON and Prometheus)', async () => {
    const dataDir = await tmp('updraft-rollover-count-');
    const lines: string[] = [];
    const before = await start(dataDir, lines);
    const old: Record<string, { certificate: string; privateKey: string }> = {};
    for (const id of ['m-1', 'm-2']) {
      await registerDevice(before, id);
      old[id] = await before.server.security.ca.issueDeviceCertificate(id);
    }
    await before.stop();
    const r = await runCli(['ca', 'rollover', '--data-dir', dataDir]);
    assert.equal(r.code, 0, r.stderr);
    const ts = await start(dataDir, lines);
    const metrics = async () => {
      const json = (await (await fetch(`${ts.httpUrl}/api/v1/metrics`, { headers: { authorization: `Bearer ${ts.token}` } })).json()) as { tls: { devicesMovedOffPreviousCa?: number } };
      const text = await (await fetch(`${ts.httpUrl}/api/v1/metrics`, { headers: { authorization: `Bearer ${ts.token}`, accept: 'text/plain' } })).text();
      return { json: json.tls.devicesMovedOffPreviousCa, text };
    };
    const zero = await metrics();
    assert.equal(zero.json, 0);
    assert.match(zero.text, /^updraft_ca_rollover_devices_moved_total 0$/m);
    const url = `mqtts://127.0.0.1:${ts.server.broker.tlsPort}`;
    const bundle = `${ts.server.security.ca.certificate}${ts.server.security.ca.previousCertificate!}`;
    for (const id of ['m-1', 'm-2']) {
      const client = await TestClient.connect(url, id, { ca: bundle, cert: old[id]!.certificate, key: old[id]!.privateKey });
      try {
        await client.subscribe(`state/${id}/certificate/renew/+`);
        const answer = await client.request(`state/${id}/certificate/renew`, renewal(id, old[id]!, 'newer-ca'));
        assert.equal(answer.topic, `state/${id}/certificate/renew/accepted`, JSON.stringify(answer.body));
      } finally {
        await client.end();
      }
    }
    const moved = await metrics();
    assert.equal(moved.json, 2);
    assert.match(moved.text, /^# TYPE updraft_ca_rollover_devices_moved_total counter$/m);
    assert.match(moved.text, /^updraft_ca_rollover_devices_moved_total 2$/m);
  });
});
