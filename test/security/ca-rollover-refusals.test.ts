/**
 * What `updraft ca` and the server refuse around a rollover, and how they say it (QA of the
 * CA rollover, 2026-12-06):
 * - `ca rollover --prepare` while a rollover is under way (a previous CA trusted): its switch
 *   would be refused until the previous CA is dropped, and its bundle hint (current and next)
 *   left the previous CA out. Refused, nothing written.
 * - a garbled or cut-off `pki/previous-ca.crt`: the server stopped with OpenSSL's words alone
 *   (`bad end line`), naming only the directory. Now the file and the way back are named, by
 *   the server's start and by `broker mosquitto-config --updraft-ca` alike.
 * - the switch reissues the server certificate: it started 5 minutes back, so a device whose
 *   clock was further behind refused the server right after the switch. It and the CA now
 *   start a day back (device certificates still 5 minutes: their notBefore says when they
 *   were issued). Checked with `openssl verify -attime`, a verifier an hour behind.
 * Real `updraft` processes on real data directories.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { caPaths } from '../../src/pki/certificate-authority.ts';
import { promisify } from 'node:util';
import { runCli } from '../helpers/cli.ts';
import { startTestServer } from '../helpers/server.ts';

const dirs: string[] = [];
const tmp = async (prefix: string) => {
  const d = await mkdtemp(path.join(os.tmpdir(), prefix));
  dirs.push(d);
  return d;
};
const exists = async (file: string) => (await stat(file).catch(() => undefined)) !== undefined;
const ok = async (args: string[]) => {
  const r = await runCli(args);
  assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
};

describe('CA rollover: what is refused, and how it is said', () => {
  after(async () => {
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });

  it('ca rollover --prepare during a rollover is refused in one line, and nothing is written; after drop-previous it prepares', async () => {
    const dataDir = await tmp('updraft-prepare-during-');
    const p = caPaths(dataDir);
    await ok(['ca', 'init', '--data-dir', dataDir]);
    await ok(['ca', 'rollover', '--data-dir', dataDir]);
    const refused = await runCli(['ca', 'rollover', '--prepare', '--data-dir', dataDir]);
    assert.notEqual(refused.code, 0, 'refused while the previous CA is trusted');
    const lines = refused.stderr.trim().split('\n');
    assert.equal(lines.length, 1, `one line: ${refused.stderr}`);
    assert.match(lines[0]!, /^updraft: error: a rollover is under way: the previous CA \(.*previous-ca\.crt\) is trusted until \d{4}-.*updraft ca drop-previous, then prepare the next one$/);
    assert.equal(await exists(p.nextCert), false, 'no next-ca.crt written');
    assert.equal(await exists(p.nextKey), false, 'no next-ca.key written');

    await ok(['ca', 'drop-previous', '--data-dir', dataDir]);
    assert.match(await ok(['ca', 'rollover', '--prepare', '--data-dir', dataDir]), /next CA prepared/);
    assert.equal(await exists(p.nextCert), true, 'prepared once the rollover ended');
  });

  it('a garbled or cut-off pki/previous-ca.crt is named, with the way back, by the server and by mosquitto-config', async () => {
    const dataDir = await tmp('updraft-previous-garbled-');
    const p = caPaths(dataDir);
    await ok(['ca', 'init', '--data-dir', dataDir]);
    await ok(['ca', 'rollover', '--data-dir', dataDir]);
    const whole = await readFile(p.previous, 'utf8');
    const lines = whole.split('\n');
    lines[4] = `${lines[4]!.slice(0, 10)}!!!${lines[4]!.slice(13)}`;
    const damaged = { garbled: lines.join('\n'), 'cut off': whole.slice(0, Math.floor(whole.length / 2)) };
    for (const [how, pem] of Object.entries(damaged)) {
      await writeFile(p.previous, pem);
      const server = await runCli(['server', '--data-dir', dataDir, '--mqtt-host', '127.0.0.1', '--mqtt-port', '0', '--http-host', '127.0.0.1', '--http-port', '0', '--mqtt-tls-port', '0']);
      assert.notEqual(server.code, 0, `${how}: the server does not start`);
      const expected = new RegExp(`^updraft: error: ${p.previous.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')} is not a readable certificate \\(.*\\): it is the CA a rollover replaced.*restore it from a backup or from another instance's pki/`, 'm');
      assert.match(server.stderr, expected, `${how}: the server names the file: ${server.stderr}`);
      // the broker's own pair is not looked at before the CA files: the CA's stand in for it
      const config = await runCli(['broker', 'mosquitto-config', '--offline', '--data-dir', dataDir, '--updraft-ca', '--tls-cert', p.cert, '--tls-key', p.key, '--out', await tmp('updraft-mosq-out-')]);
      assert.notEqual(config.code, 0, `${how}: mosquitto-config refuses`);
      assert.match(config.stderr, expected, `${how}: mosquitto-config names the file: ${config.stderr}`);
    }
  });

  it('after the switch, a verifier an hour behind accepts the reissued server certificate and the new CA; a device certificate starts 5 minutes back', async () => {
    const dataDir = await tmp('updraft-switch-skew-');
    const p = caPaths(dataDir);
    await ok(['ca', 'init', '--data-dir', dataDir]);
    await ok(['ca', 'rollover', '--data-dir', dataDir]);
    const ts = await startTestServer({ dataDir }); // issues its server certificate from the new CA
    try {
      const device = await ts.server.security.ca.issueDeviceCertificate('skew-1');
      const devicePem = path.join(dataDir, 'device.crt');
      await writeFile(devicePem, device.certificate);
      const hourAgo = String(Math.floor(Date.now() / 1000) - 3_600);
      const verify = (at: string, file: string) => promisify(execFile)('openssl', ['verify', '-attime', at, '-CAfile', p.cert, file]).then((r) => r.stdout, (err: { stdout?: string; stderr?: string }) => `refused: ${err.stdout ?? ''}${err.stderr ?? ''}`);
      assert.match(await verify(hourAgo, path.join(p.dir, 'server.crt')), /: OK$/m, 'the server certificate and the new CA, verified an hour back');
      assert.match(await verify(String(Math.floor(Date.now() / 1000)), devicePem), /: OK$/m, 'a device certificate verified now');
      assert.match(await verify(hourAgo, devicePem), /^refused: [^]*certificate is not yet valid/, 'a device certificate starts 5 minutes back: its notBefore says when it was issued');
    } finally {
      await ts.stop();
    }
  });
});
