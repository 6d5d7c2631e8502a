/**
 * Set-up the CA rollover tests share (docs/security.md, "When the CA nears its end"): temp
 * directories and real servers released after the file, devices given certificates of the CA
 * a server made, `updraft ca rollover` run with the server stopped, and real agents over
 * MQTTS with those certificates and the bundle of both CAs.
 */
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import forge from 'node-forge';
import type { UpdateAgent } from '../../src/agent/agent.ts';
import type { UpdateAgentOptions } from '../../src/agent/agent-options.ts';
import type { TlsPair } from '../../src/agent/certificate-renewer.ts';
import { caPaths } from '../../src/pki/certificate-authority.ts';
import { createLogger } from '../../src/util/logger.ts';
import { eventually, runCli } from '../helpers/cli.ts';
import { connectDevice } from '../helpers/mqtt-client.ts';
import { registerDevice, startTestServer, type TestServer } from '../helpers/server.ts';
import { startAgent } from './support.ts';

/** A log line (JSON) as an object. */
export type Line = Record<string, unknown>;

/** The JSON lines of a `lines` logger, parsed. */
export const parsed = (lines: string[]): Line[] => lines.map((l) => JSON.parse(l) as Line);

/** True when `caPem` issued and signed the certificate `pem`. */
export const issuedBy = (pem: string, caPem: string): boolean => {
  const cert = new X509Certificate(pem);
  const ca = new X509Certificate(caPem);
  return cert.checkIssued(ca) && cert.verify(ca.publicKey);
};

/** Temp directories, servers and agents of one test file; `release()` in its `after`. */
export class RolloverFixture {
  private readonly dirs: string[] = [];
  private readonly servers: TestServer[] = [];
  private readonly agents: UpdateAgent[] = [];

  /** A new temp directory, removed by release(). */
  async tmp(prefix: string): Promise<string> {
    const d = await mkdtemp(path.join(os.tmpdir(), prefix));
    this.dirs.push(d);
    return d;
  }

  /** A real server on `dataDir` (stopped by release() if the test did not), logging JSON into `lines` when given. */
  async start(dataDir: string, options: { lines?: string[]; flags?: Record<string, unknown> } = {}): Promise<TestServer> {
    const lines = options.lines;
    const ts = await startTestServer({ dataDir, ...(options.flags ? { flags: options.flags } : {}), ...(lines ? { logger: createLogger({ level: 'info', format: 'json', write: (l) => lines.push(l) }) } : {}) });
    this.servers.push(ts);
    return ts;
  }

  /**
   * A real agent of `ts` connected over MQTTS with `pair` and the CA file `ca` (the agents'
   * --ca); it renews (and so moves to a newer CA of `ca`) only with `renew`.
   */
  async agent(ts: TestServer, deviceId: string, pair: TlsPair, ca: string, options: { renew?: boolean; extra?: Partial<UpdateAgentOptions> } = {}): Promise<{ agent: UpdateAgent; renewed: TlsPair[] }> {
    const renewed: TlsPair[] = [];
    const { agent } = await startAgent(ts, await this.tmp(`updraft-rollover-agent-${deviceId}-`), deviceId, {
      brokerUrl: `mqtts://127.0.0.1:${ts.server.broker.tlsPort}`,
      mqttOptions: { reconnectPeriod: 200, ca, cert: pair.certificate, key: pair.privateKey },
      ...(options.renew ? { certificateRenewal: { save: async (p: TlsPair) => void renewed.push(p) } } : {}),
      requestAttempts: 1,
      ...options.extra,
    });
    this.agents.push(agent);
    return { agent, renewed };
  }

  /** Stops what is still running, then removes the directories. */
  async release(): Promise<void> {
    for (const a of this.agents) await a.stop().catch(() => {});
    for (const s of this.servers) await s.stop().catch(() => {});
    for (const d of this.dirs) await rm(d, { recursive: true, force: true });
  }
}

/** A data directory after `updraft ca rollover`, and what its devices hold. */
export interface RolledOver {
  dataDir: string;
  /** The CA before the switch: pki/previous-ca.crt now. */
  oldCa: string;
  /** The CA after it: pki/ca.crt. */
  newCa: string;
  /** Both, as devices are given them (docs/security.md, step 2). */
  bundle: string;
  /** Each device's certificate of the old CA. */
  pairs: Record<string, TlsPair>;
  /** The server's ports, to start it again where the agents reconnect. */
  ports: Record<string, number | undefined>;
}

/**
 * A server on a new data directory (with `flags`, e.g. `db`) registers `deviceIds` and issues
 * each a certificate of its CA; stopped, `updraft ca rollover` switches the CA (passing
 * `rolloverArgs`, e.g. `--db <url>`).
 */
export async function rolledOver(fx: RolloverFixture, deviceIds: string[], options: { flags?: Record<string, unknown>; rolloverArgs?: string[] } = {}): Promise<RolledOver> {
  const dataDir = await fx.tmp('updraft-rollover-');
  const before = await fx.start(dataDir, options.flags ? { flags: options.flags } : {});
  const oldCa = before.server.security.ca.certificate;
  const pairs: Record<string, TlsPair> = {};
  for (const id of deviceIds) {
    await registerDevice(before, id);
    const issued = await before.server.security.ca.issueDeviceCertificate(id); // two years: not due for renewal
    pairs[id] = { certificate: issued.certificate, privateKey: issued.privateKey };
  }
  const ports = { 'mqtt-port': Number(new URL(before.mqttUrl).port), 'http-port': Number(new URL(before.httpUrl).port), 'mqtt-tls-port': before.server.broker.tlsPort };
  await before.stop();
  const r = await runCli(['ca', 'rollover', '--data-dir', dataDir, ...(options.rolloverArgs ?? [])]);
  assert.equal(r.code, 0, `ca rollover: ${r.stderr}`);
  const newCa = await readFile(caPaths(dataDir).cert, 'utf8');
  assert.notEqual(newCa, oldCa, 'the rollover made a new CA');
  return { dataDir, oldCa, newCa, bundle: `${oldCa}${newCa}`, pairs, ports };
}

/** Waits until `deviceId`'s agent reported `issuer` as its certificate's (reported.agent.certificateIssuer). */
export async function reportedIssuer(ts: TestServer, deviceId: string, issuer: string): Promise<string> {
  return eventually(
    async () => {
      const agent = (await ts.server.store.getShadow(deviceId, ''))?.state.reported?.agent as { certificateIssuer?: string } | undefined;
      return agent?.certificateIssuer === issuer ? issuer : undefined;
    },
    30_000,
    `${deviceId} reported certificateIssuer "${issuer}"`,
  );
}

/** Registers `deviceId`, which reports `issuer` as its certificate's over its own MQTT connection (a password login), as an agent does. */
export async function reportsIssuer(ts: TestServer, deviceId: string, issuer: string): Promise<void> {
  const device = await connectDevice(ts, deviceId);
  try {
    await device.subscribe(`state/${deviceId}/#`);
    await device.request(`state/${deviceId}/update`, { state: { reported: { agent: { certificateIssuer: issuer } } } });
  } finally {
    await device.end();
  }
}

/**
 * A CA that expired yesterday (named `CN=Expired device CA, O=Updraft`), and a certificate of
 * it for `deviceId`, made as any CA would (node-forge): the device certificate is valid by its
 * own dates, so that only its CA's end can refuse it.
 */
export function expiredCa(deviceId: string): { ca: string; device: { cert: string; key: string } } {
  const keys = forge.pki.rsa.generateKeyPair(2048);
  const caCert = forge.pki.createCertificate();
  caCert.publicKey = keys.publicKey;
  caCert.serialNumber = '01';
  caCert.validity.notBefore = new Date(Date.now() - 400 * 86_400_000);
  caCert.validity.notAfter = new Date(Date.now() - 86_400_000);
  const name = [{ name: 'commonName', value: 'Expired device CA' }, { name: 'organizationName', value: 'Updraft' }];
  caCert.setSubject(name);
  caCert.setIssuer(name);
  caCert.setExtensions([{ name: 'basicConstraints', cA: true, critical: true }, { name: 'keyUsage', critical: true, keyCertSign: true }]);
  caCert.sign(keys.privateKey, forge.md.sha256.create());
  const devKeys = forge.pki.rsa.generateKeyPair(2048);
  const dev = forge.pki.createCertificate();
  dev.publicKey = devKeys.publicKey;
  dev.serialNumber = '02';
  dev.validity.notBefore = new Date(Date.now() - 300 * 86_400_000);
  dev.validity.notAfter = new Date(Date.now() + 30 * 86_400_000);
  dev.setSubject([{ name: 'commonName', value: deviceId }]);
  dev.setIssuer(name);
  dev.setExtensions([{ name: 'extKeyUsage', clientAuth: true }]);
  dev.sign(keys.privateKey, forge.md.sha256.create());
  return { ca: forge.pki.certificateToPem(caCert), device: { cert: forge.pki.certificateToPem(dev), key: forge.pki.privateKeyToPem(devKeys.privateKey) } };
}
