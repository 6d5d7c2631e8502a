/**
 * A library agent (UpdateAgent) stopped and started again, over MQTT over TLS with a client
 * certificate, reading its TLS files with the daemon's TlsFileReader (`reloadTls`). Its
 * certificate renewed (written over its files by the renewal's `save`), the restarted agent
 * went back to its `mqttOptions`, the certificate it had been given: the reader compared the
 * files with what it had read or written last, found them unchanged and handed nothing over,
 * and the renewer, built from `mqttOptions`, asked to renew that certificate again (refused
 * within the hour) and reported it as the one in use. The reader now compares the files with
 * what the client uses, and the agent asks it at the first attempt of each start too.
 * Real server, real MQTTS, real agents.
 */
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { MemoryAgentStateStore, SimulatedInstaller, UpdateAgent } from '../../src/agent/index.ts';
import { saveRenewedFiles } from '../../src/agent/certificate-renewer.ts';
import { TlsFileReader } from '../../src/agent/tls-files.ts';
import { caPaths } from '../../src/pki/certificate-authority.ts';
import { createLogger } from '../../src/util/logger.ts';
import { eventually } from '../helpers/cli.ts';
import { registerDevice, startTestServer, type TestServer } from '../helpers/server.ts';

describe('a library agent restarted after its certificate was renewed', () => {
  let ts: TestServer;
  let dir: string;
  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'updraft-tls-restart-'));
    ts = await startTestServer();
  });
  after(async () => {
    await ts.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('connects with the renewed files, and neither renews again nor reports the old certificate', async () => {
    await registerDevice(ts, 'tr-1');
    const ca = await readFile(caPaths(ts.dataDir).cert, 'utf8');
    const old = await ts.server.security.ca.issueDeviceCertificate('tr-1', 10); // within the 30 days: renewed at connect
    const files = { ca: path.join(dir, 'ca.crt'), cert: path.join(dir, 'tr-1.crt'), key: path.join(dir, 'tr-1.key') };
    await writeFile(files.ca, ca);
    await writeFile(files.cert, old.certificate);
    await writeFile(files.key, old.privateKey, { mode: 0o600 });
    const given = { ca, cert: old.certificate, key: old.privateKey };
    const lines: string[] = [];
    const logger = createLogger({ level: 'debug', format: 'json', write: (l) => lines.push(l) });
    const reader = new TlsFileReader(files, given, logger);
    let renewals = 0;
    const agent = new UpdateAgent({
      deviceId: 'tr-1',
      brokerUrl: `mqtts://127.0.0.1:${ts.server.broker.tlsPort}`,
      installer: new SimulatedInstaller({ initial: { name: 'fw', version: '1.0.0' }, durationMs: 20 }),
      stateStore: new MemoryAgentStateStore(),
      stateDir: path.join(dir, 'state'),
      logger,
      allowUnsigned: true,
      mqttOptions: { ...given, rejectUnauthorized: true, reconnectPeriod: 200 },
      certificateRenewal: {
        renewBeforeDays: 30,
        save: async (pair) => {
          await saveRenewedFiles(files, pair);
          reader.written({ cert: pair.certificate, key: pair.privateKey });
        },
      },
      reloadTls: (inUse) => reader.read(inUse),
    });
    agent.on('certificate-renewed', () => renewals++);
    const reported = async () => (await ts.server.store.getShadow('tr-1', ''))?.state.reported?.agent as { certificateExpiresAt?: number; certificateRenewalError?: string | null } | undefined;
    try {
      await agent.start();
      await eventually(async () => (renewals === 1 ? true : undefined), 30_000, 'renewed once at the first connect');
      const renewed = new X509Certificate(await readFile(files.cert, 'utf8'));
      assert.notEqual(renewed.serialNumber, new X509Certificate(old.certificate).serialNumber, 'the files hold the renewed certificate');
      const renewedExpiry = Math.floor(Date.parse(renewed.validTo) / 1000);

      await agent.stop();
      const connectsBefore = lines.length;
      await agent.start();
      await eventually(async () => (agent.connected ? true : undefined), 30_000, 'connected again');
      await eventually(async () => ((await reported())?.certificateExpiresAt === renewedExpiry ? true : undefined), 15_000, `the renewed certificate reported in use after the restart (reported ${JSON.stringify(await reported())})`);
      const after = lines.slice(connectsBefore).map((l) => JSON.parse(l) as { level: string; msg: string });
      assert.equal(after.filter((l) => /client certificate (renewal asked|not renewed)/.test(l.msg)).length, 0, `no renewal asked of the old certificate: ${after.map((l) => l.msg).join(' | ')}`);
      assert.equal(renewals, 1, 'not renewed again');
      assert.ok(((await reported())?.certificateRenewalError ?? null) === null, 'no renewal error reported');
    } finally {
      await agent.stop();
    }
  });
});
