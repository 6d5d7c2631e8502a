/**
 * Instances on one data directory (PostgreSQL instances sharing a volume) renewing the
 * server certificate at once (src/server/server-tls-renewal.ts): each writes server.key,
 * server.crt and server-hosts.json, each file renamed into place on its own, so two doing
 * it together could leave one's key beside the other's certificate (a reviewer saw it in 1
 * of 20 runs). The daily look now holds the data directory's setup lock, as the start does:
 * shown deterministically by holding that lock (as another instance would) and seeing the
 * look wait for it. The real renewal part, CA, lock and files; the listener is a callback.
 */
import assert from 'node:assert/strict';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, it } from 'node:test';
import { loadOrCreateCa } from '../../src/pki/certificate-authority.ts';
import { resolveServerTls } from '../../src/pki/server-tls.ts';
import { whileSettingUp } from '../../src/server/data-dir-lock.ts';
import { ServerTlsRenewal } from '../../src/server/server-tls-renewal.ts';
import { createLogger } from '../../src/util/logger.ts';
import { eventually } from '../helpers/cli.ts';

const DAY = 86_400_000;
const dirs: string[] = [];
after(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

it("the daily renewal of the server certificate waits for the data directory's setup lock, and leaves a key and certificate that match", async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'updraft-shared-pki-'));
  dirs.push(dir);
  const { ca } = await loadOrCreateCa(dir);
  const hosts = ['localhost'];
  const first = await resolveServerTls({ dataDir: dir, ca, certFile: '', keyFile: '', hosts, what: 'mqtt.tls' });
  const lines: string[] = [];
  const applied: string[] = [];
  const renewal = new ServerTlsRenewal({ dataDir: dir, ca, hosts, logger: createLogger({ level: 'info', format: 'json', write: (l) => lines.push(l) }), listeners: [{ what: 'mqtt', tls: first, certFile: '', keyFile: '', apply: (t) => void applied.push(t.cert) }] });
  const files = async () => ({ cert: await readFile(path.join(dir, 'pki/server.crt'), 'utf8'), key: await readFile(path.join(dir, 'pki/server.key'), 'utf8') });

  let looked: Promise<void> | undefined;
  // another instance holds the lock (writing its own renewal, or starting up)
  await whileSettingUp(dir, async () => {
    // judged 700 days on, the certificate has 30 days left of its 730: due
    looked = renewal.check(Date.now() + 700 * DAY);
    await eventually(async () => (lines.some((l) => l.includes('waiting for another process setting up this data directory')) ? true : undefined), 15_000, 'the renewal waits for the lock');
    assert.equal((await files()).cert, first.cert, 'nothing written while another holds the lock');
  });
  await looked;
  const now = await files();
  assert.notEqual(now.cert, first.cert, 'renewed once the lock was free');
  assert.ok(new X509Certificate(now.cert).checkPrivateKey(createPrivateKey(now.key)), 'server.key is server.crt’s key');
  assert.deepEqual(applied, [now.cert], 'the listener serves what the files hold');
});
