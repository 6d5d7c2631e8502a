/**
 * The daemon's reader of its TLS files (src/agent/tls-files.ts), on real files: a change is
 * returned once; while the agent's own renewal writes its pair (`<cert>.renewed`) nothing is
 * read, but a `.renewed` left by a save that failed (older than a minute) does not turn the
 * reading off for good; a set that is not usable is said once and not returned.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, utimes, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { TlsFileReader } from '../../src/agent/tls-files.ts';
import { createCa } from '../../src/pki/certificate-authority.ts';
import { createLogger } from '../../src/util/logger.ts';

describe("the agent daemon's TLS file reader", () => {
  const dirs: string[] = [];
  after(async () => {
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });

  it('returns a change once, waits while a renewal writes, reads past a stale .renewed, and says an unusable set once', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'updraft-tls-files-'));
    dirs.push(dir);
    const ca = await createCa(path.join(dir, 'ca'));
    const [one, two] = [await ca.issueDeviceCertificate('f-1'), await ca.issueDeviceCertificate('f-1')];
    const files = { ca: path.join(dir, 'ca.crt'), cert: path.join(dir, 'f-1.crt'), key: path.join(dir, 'f-1.key') };
    const put = async (pair: { certificate: string; privateKey: string }) => {
      await writeFile(files.cert, pair.certificate);
      await writeFile(files.key, pair.privateKey);
    };
    await writeFile(files.ca, ca.certificate);
    await put(one);
    const lines: string[] = [];
    const reader = new TlsFileReader(files, { ca: ca.certificate, cert: one.certificate, key: one.privateKey }, createLogger({ level: 'info', format: 'json', write: (l) => lines.push(l) }));
    assert.equal(reader.read(), undefined, 'unchanged: nothing');

    await put(two);
    const renewed = `${files.cert}.renewed`;
    await writeFile(renewed, two.certificate); // a renewal writing its pair now
    assert.equal(reader.read(), undefined, 'nothing read while a renewal writes');
    const ahead = new Date(Date.now() + 3_600_000);
    await utimes(renewed, ahead, ahead); // dated ahead of the clock (stepped back since): no write under way
    assert.deepEqual(reader.read(), { ca: ca.certificate, cert: two.certificate, key: two.privateKey }, 'read past a .renewed dated in the future');
    await put(one);
    const old = new Date(Date.now() - 120_000);
    await utimes(renewed, old, old); // left by a save that failed two minutes ago
    assert.deepEqual(reader.read(), { ca: ca.certificate, cert: one.certificate, key: one.privateKey }, 'read past a stale .renewed');
    assert.equal(reader.read(), undefined, 'returned once');

    await writeFile(files.key, two.privateKey); // a key that is not the certificate's
    assert.equal(reader.read(), undefined, 'an unusable set is not returned');
    assert.equal(reader.read(), undefined);
    const warned = lines.map((l) => JSON.parse(l) as { level: string; msg: string; reason?: string }).filter((l) => l.level === 'warn');
    assert.equal(warned.length, 1, `said once: ${lines.join('\n')}`);
    assert.match(warned[0]!.reason ?? '', /are not a usable certificate and its private key/);
  });
});
