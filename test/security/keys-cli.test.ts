/** `updraft keys generate|export-public` and the agent daemon's refusal to run without a signing key. */
import assert from 'node:assert/strict';
import { createPublicKey } from 'node:crypto';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { loadOrCreateKeyRing } from '../../src/artifacts/key-ring.ts';
import { activeKey } from '../../src/artifacts/url-signer.ts';
import { signingKeyPaths } from '../../src/signing/signing-key.ts';
import { parseRate } from '../../src/cli/agent-command.ts';
import { runCli } from '../helpers/cli.ts';

describe('updraft keys', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'updraft-keys-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it('generates an Ed25519 key (private 0600), refuses to replace it without --force, exports the public half', async () => {
    const data = path.join(dir, 'data');
    const gen = await runCli(['keys', 'generate', '--data-dir', data, '--json']);
    assert.equal(gen.code, 0, gen.stderr);
    const first = JSON.parse(gen.stdout) as { keyId: string };
    const p = signingKeyPaths(data);
    assert.equal((await stat(p.key)).mode & 0o777, 0o600);
    assert.equal(createPublicKey(await readFile(p.pub, 'utf8')).asymmetricKeyType, 'ed25519');

    const again = await runCli(['keys', 'generate', '--data-dir', data]);
    assert.equal(again.code, 2);
    assert.match(again.stderr, /already exists/);
    const forced = await runCli(['keys', 'generate', '--data-dir', data, '--force', '--json']);
    assert.equal(forced.code, 0, forced.stderr);
    assert.notEqual((JSON.parse(forced.stdout) as { keyId: string }).keyId, first.keyId);

    const exported = await runCli(['keys', 'export-public', '--data-dir', data]);
    assert.equal(exported.code, 0);
    assert.equal(exported.stdout, await readFile(p.pub, 'utf8'));
    const missing = await runCli(['keys', 'export-public', '--data-dir', path.join(dir, 'none')]);
    assert.match(missing.stderr, /no public signing key/);
  });

  it('stages a URL key offline in a data directory, to be copied to every instance', async () => {
    const data = path.join(dir, 'ring');
    const [first] = await loadOrCreateKeyRing(data);
    const r = await runCli(['keys', 'rotate-url', '--offline', '--data-dir', data, '--activate-in', '2h']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^rotated: [0-9a-f]{8} signs from \S+ \(verifies already\) in .*ring \(copy keys\/url-signing\.json to every instance, then restart them before then\)\n/);
    const ring = await loadOrCreateKeyRing(data);
    assert.equal(ring.length, 2);
    assert.equal(activeKey(ring).kid, first!.kid, 'the old key signs until then');
    assert.ok(Math.abs(ring[0]!.activeFrom! - (Date.now() + 7_200_000)) < 60_000);
    assert.equal(activeKey(ring, Date.now() + 7_300_000).kid, ring[0]!.kid, 'the new one after');
    const bad = await runCli(['keys', 'rotate-url', '--offline', '--data-dir', data, '--activate-in', 'soon']);
    assert.equal(bad.stderr, 'updraft: error: --activate-in must be a duration like 90, 30s, 10m, 1h or 2d, got soon\n');
  });

  it('the agent daemon will not run without a signing key unless told --insecure-allow-unsigned', async () => {
    const r = await runCli(['agent', '--device', 'dev-1', '--install-dir', path.join(dir, 'dev1'), '--password', 'x', '--broker', 'mqtt://127.0.0.1:1']);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /^updraft: error: no software signing key: pass --signing-key/);
  });

  it('the agent reads a download rate limit as bytes per second with k and M suffixes, and refuses one it cannot read', async () => {
    assert.equal(parseRate('500k'), 500_000);
    assert.equal(parseRate('2M'), 2_000_000);
    assert.equal(parseRate('1.5m'), 1_500_000);
    assert.equal(parseRate('4096'), 4096);
    assert.ok(Number.isNaN(parseRate('fast')));
    for (const rate of ['10', 'fast']) {
      const r = await runCli(['agent', '--device', 'dev-1', '--install-dir', path.join(dir, 'dev1'), '--max-download-rate', rate]);
      assert.equal(r.code, 2, `--max-download-rate ${rate} is bad input`);
      assert.equal(r.stderr, 'updraft: error: invalid agent options: --max-download-rate must be at least 1k (bytes per second; k and M suffixes: 500k, 2M)\n');
    }
  });

  it('the agent daemon names every bad option at once, on the one line the command prints', async () => {
    const r = await runCli(['agent', '--device', 'bad id!', '--install-dir', path.join(dir, 'dev1'), '--broker', 'nope://x', '--download-auth', 'ftp']);
    assert.equal(r.code, 2); // bad flags: a usage error, as a bad server setting is
    assert.equal(
      r.stderr,
      'updraft: error: invalid agent options: --device must be 1 to 128 characters of letters, digits, _ . : -, other than "." and ".."; --broker must be a URL like mqtt://host:1883; --download-auth must be url or token\n',
    );
  });
});
