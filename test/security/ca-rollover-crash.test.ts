/**
 * `updraft ca rollover` stopped midway (a crash, a SIGKILL, a power cut) and the names of the
 * CAs it makes.
 *
 * The switch renames the new key onto pki/ca.key, then the new certificate onto pki/ca.crt. A
 * stop between the two left a key that is not the certificate's: the server refused to start,
 * so did a second rollover, and without a prepared CA the new certificate had existed only in
 * the killed process (review of 8a9e1bc). The process here is killed right after the first
 * rename (a preload around fs.promises.rename), with and without `--prepare`; the server then
 * starts on the new CA with the old one as previous.
 *
 * The default name of a new CA carried the day's date only, so a CA made by a rollover today
 * and its successor made today had one name, and TLS, which finds an issuer by name, then
 * refused the devices of one of them.
 */
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { caPaths, createCa, dropPreviousCa, rolloverCa } from '../../src/pki/certificate-authority.ts';
import { runCli, runNode } from '../helpers/cli.ts';
import { startTestServer } from '../helpers/server.ts';

const BIN = fileURLToPath(new URL('../../bin/updraft.js', import.meta.url));
const dirs: string[] = [];
const tmp = async (prefix: string) => {
  const d = await mkdtemp(path.join(os.tmpdir(), prefix));
  dirs.push(d);
  return d;
};
const subject = (pem: string) => new X509Certificate(pem).subject;
const exists = async (file: string) => (await stat(file).catch(() => undefined)) !== undefined;

/** A preload that kills the process (SIGKILL) right after the rename that puts a key at pki/ca.key. */
async function crashAfterKeyRename(): Promise<string> {
  const file = path.join(await tmp('updraft-crash-preload-'), 'crash.mjs');
  await writeFile(
    file,
    [
      "import fsp from 'node:fs/promises';",
      "import { syncBuiltinESMExports } from 'node:module';",
      'const rename = fsp.rename;',
      "fsp.rename = async (from, to) => { await rename(from, to); if (String(to).endsWith('/pki/ca.key')) process.kill(process.pid, 'SIGKILL'); };",
      'syncBuiltinESMExports();',
      '',
    ].join('\n'),
  );
  return file;
}

async function ok(args: string[]): Promise<string> {
  const r = await runCli(args);
  assert.equal(r.code, 0, `updraft ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

describe('ca rollover stopped midway, and the names of successive CAs', () => {
  after(async () => {
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });

  for (const prepared of [true, false]) {
    it(`${prepared ? 'a prepared CA, the command run again' : 'a CA made by the rollover'}: killed after the new key's rename, ${prepared ? 'the rollover is finished by running it again' : 'the server starts on the new CA'} with the old one as previous`, async () => {
      const dataDir = await tmp('updraft-rollover-crash-');
      const p = caPaths(dataDir);
      await ok(['ca', 'init', '--data-dir', dataDir]);
      const oldCert = await readFile(p.cert, 'utf8');
      let nextCert: string | undefined;
      if (prepared) {
        await ok(['ca', 'rollover', '--prepare', '--data-dir', dataDir]);
        nextCert = await readFile(p.nextCert, 'utf8');
      }
      const killed = await runNode(['--import', await crashAfterKeyRename(), BIN, 'ca', 'rollover', '--data-dir', dataDir]);
      assert.equal(killed.code, null, `killed by the preload, not ended: ${killed.code} ${killed.stderr}`);
      assert.equal(await readFile(p.cert, 'utf8'), oldCert, 'stopped between the renames: pki/ca.crt is still the old certificate');
      assert.ok(await exists(p.nextCert), 'the new certificate is on disk, as pki/next-ca.crt');

      if (prepared) {
        // the operator runs the command again: it finishes, and says so (it refused itself, a
        // previous CA being trusted once loading had finished the switch, and sent the operator
        // to drop-previous)
        const again = await runCli(['ca', 'rollover', '--data-dir', dataDir]);
        assert.equal(again.code, 0, again.stderr);
        assert.match(again.stdout, /^CA rolled over: a rollover stopped midway was finished/);
      }
      // without: the server's start finishes it
      const ts = await startTestServer({ dataDir });
      try {
        const ca = ts.server.security.ca;
        assert.notEqual(ca.certificate.trim(), oldCert.trim(), 'the new CA is current');
        if (nextCert !== undefined) assert.equal(ca.certificate.trim(), nextCert.trim(), 'the prepared CA');
        assert.equal(ca.previousCertificate?.trim(), oldCert.trim(), 'the old CA is the previous one');
        assert.equal(ca.trustsPrevious(), true);
      } finally {
        await ts.stop();
      }
      assert.equal(await exists(p.nextCert), false, 'pki/next-ca.crt renamed into place');
      assert.equal((await readFile(p.cert, 'utf8')).trim(), (nextCert ?? (await readFile(p.cert, 'utf8'))).trim());
    });
  }

  it('a second rollover on the same day, and a --prepare on the day of a rollover, name the new CA apart from the current one', async () => {
    const dataDir = await tmp('updraft-rollover-names-');
    const p = caPaths(dataDir);
    await ok(['ca', 'init', '--data-dir', dataDir]);
    await ok(['ca', 'rollover', '--data-dir', dataDir]);
    const first = await readFile(p.cert, 'utf8');
    await ok(['ca', 'drop-previous', '--data-dir', dataDir]);
    await ok(['ca', 'rollover', '--data-dir', dataDir]);
    const second = await readFile(p.cert, 'utf8');
    assert.notEqual(subject(second), subject(first), `two CAs trusted side by side, one name: ${subject(second)}`);
    assert.equal(subject(await readFile(p.previous, 'utf8')), subject(first));

    await ok(['ca', 'drop-previous', '--data-dir', dataDir]);
    await ok(['ca', 'rollover', '--prepare', '--data-dir', dataDir]);
    const next = await readFile(p.nextCert, 'utf8');
    assert.notEqual(subject(next), subject(second), `the prepared CA named as the current one: ${subject(next)}`);
    assert.notEqual(subject(next), subject(first));
  });

  it('rollovers within one second: each CA named apart from all the others', async () => {
    const dataDir = await tmp('updraft-rollover-second-');
    await createCa(dataDir);
    const at = Date.parse('2031-03-04T05:06:07.250Z');
    const names = [subject(await readFile(caPaths(dataDir).cert, 'utf8'))];
    for (let i = 0; i < 3; i++) {
      names.push(subject((await rolloverCa(dataDir, undefined, at)).certificate));
      assert.equal(await dropPreviousCa(dataDir), true);
    }
    assert.equal(new Set(names).size, names.length, names.join(' | '));
    assert.match(names[3]!, /^CN=Updraft device CA 2031-03-04 05:06:07Z \(3\)$/m);
  });
});
