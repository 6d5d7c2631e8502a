/**
 * `updraft agent` reads its key and certificate files before it starts, and a file that is
 * not what its option says ends it with one line naming the option and the file (exit 2),
 * not OpenSSL's own words after the start-up lines.
 */
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createCa } from '../../src/pki/certificate-authority.ts';
import { runCli } from '../helpers/cli.ts';

describe('updraft agent: its key and certificate files', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'updraft-agent-files-'));
    await writeFile(path.join(dir, 'not-a-key'), 'root:x:0:0:root:/root:/bin/sh\n');
    await writeFile(path.join(dir, 'rsa.pub'), generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey.export({ type: 'spki', format: 'pem' }));
    // a CA rollover's bundle (two CAs) cut off inside its second certificate, and one whose second does not parse
    const one = (await createCa(path.join(dir, 'ca1'), 'CA 1')).certificate;
    const two = (await createCa(path.join(dir, 'ca2'), 'CA 2')).certificate;
    await writeFile(path.join(dir, 'cut-bundle.crt'), `${one}${two.slice(0, Math.floor(two.length / 2))}`);
    const lines = two.trim().split('\n');
    await writeFile(path.join(dir, 'garbled-bundle.crt'), `${one}${[lines[0], ...lines.slice(1, -1).map((l) => l.replace(/[A-Za-z]/g, 'A')), lines.at(-1)].join('\n')}\n`);
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it('refuses a file that is not what its option says: one line naming both, exit 2, before the agent starts', async () => {
    const bad = path.join(dir, 'not-a-key');
    const base = ['agent', '--device', 'dev-files', '--install-dir', path.join(dir, 'install'), '--broker', 'mqtt://127.0.0.1:9', '--password', 'x'];
    const cases: [string[], RegExp][] = [
      [['--signing-key', bad], new RegExp(`^updraft: error: --signing-key ${bad} is not an Ed25519 public key in PEM: `)],
      [['--root-key', bad], new RegExp(`^updraft: error: --root-key ${bad} is not an Ed25519 public key in PEM: `)],
      [['--signing-key', path.join(dir, 'rsa.pub')], /^updraft: error: --signing-key \S+rsa\.pub is not an Ed25519 public key in PEM: the software signing key must be Ed25519, got rsa\n$/],
      [['--insecure-allow-unsigned', '--cert', bad, '--key', bad], new RegExp(`^updraft: error: --cert ${bad} and --key ${bad} are not a usable certificate and its private key \\(PEM\\): `)],
      [['--insecure-allow-unsigned', '--ca', bad], new RegExp(`^updraft: error: --ca ${bad} is not a usable CA certificate \\(PEM\\): `)],
      [['--insecure-allow-unsigned', '--ca', path.join(dir, 'cut-bundle.crt')], /^updraft: error: --ca \S+cut-bundle\.crt: certificate 2 of 2 is cut off \(a BEGIN CERTIFICATE line with no END line\)\n$/],
      [['--insecure-allow-unsigned', '--ca', path.join(dir, 'garbled-bundle.crt')], /^updraft: error: --ca \S+garbled-bundle\.crt: certificate 2 of 2 is not a usable CA certificate \(PEM\): /],
    ];
    for (const [extra, line] of cases) {
      const r = await runCli([...base, ...extra]);
      assert.equal(r.code, 2, `${extra.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, line);
      assert.equal(r.stderr.trim().split('\n').length, 1, `one line, nothing started: ${r.stderr}`);
    }
  });
});
