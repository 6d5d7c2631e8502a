/**
 * The offline commands that write what a server's first start creates (the operator token,
 * the signing key, the URL key ring, the CA) take the lock a starting server takes
 * (whileSettingUp): while it is held, each waits and writes nothing; once it is let go, it
 * writes. A test process holds the lock, as a starting server would.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { whileSettingUp } from '../../src/server/data-dir-lock.ts';
import { loadOrCreateKeyRing } from '../../src/artifacts/key-ring.ts';
import { loadOrCreateOperatorToken } from '../../src/server/operator-token.ts';
import { startCli, type CliProcess } from '../helpers/cli.ts';

const dirs: string[] = [];
after(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

const WAITING = /updraft: waiting for another process setting up .* \(a server starting on it\) before writing into it/;

/** Runs `args` while the setup lock of a new data directory is held: it must wait, writing nothing, then finish once the lock goes. */
async function waitsForTheLock(args: (dir: string) => string[], file: string, before?: (dir: string) => Promise<void>): Promise<{ dir: string; proc: CliProcess; earlier?: string }> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'updraft-offline-lock-'));
  dirs.push(dir);
  await before?.(dir);
  const earlier = await readFile(path.join(dir, file), 'utf8').catch(() => undefined);
  let proc: CliProcess | undefined;
  await whileSettingUp(dir, async () => {
    proc = startCli(args(dir));
    await proc.waitFor(WAITING, 60_000);
    // it waits before writing anything
    assert.equal(await readFile(path.join(dir, file), 'utf8').catch(() => undefined), earlier, `${file} was written while the lock was held`);
    assert.equal(proc.child.exitCode, null, proc.output());
  });
  const code = proc!.child.exitCode ?? (await new Promise<number | null>((resolve) => proc!.child.once('close', resolve)));
  assert.equal(code, 0, proc!.output());
  assert.notEqual(await readFile(path.join(dir, file), 'utf8'), earlier, `${file} was not written`);
  return { dir, proc: proc!, earlier };
}

describe('offline commands take the data directory setup lock', () => {
  it('token rotate --offline waits while a server sets the directory up, then writes the token', async () => {
    const { dir, proc } = await waitsForTheLock((d) => ['token', 'rotate', '--offline', '--data-dir', d, '--json'], 'operator-token', async (d) => {
      await loadOrCreateOperatorToken(d);
    });
    const printed = (JSON.parse(proc.output().slice(proc.output().indexOf('{'))) as { token: string }).token;
    assert.equal((await readFile(path.join(dir, 'operator-token'), 'utf8')).trim(), printed);
  });

  it('keys generate waits, then writes the signing key', async () => {
    await waitsForTheLock((d) => ['keys', 'generate', '--data-dir', d], 'keys/software-signing.key');
  });

  it('keys rotate-url --offline waits, then writes the key ring', async () => {
    await waitsForTheLock((d) => ['keys', 'rotate-url', '--offline', '--data-dir', d], 'keys/url-signing.json', async (d) => {
      await loadOrCreateKeyRing(d);
    });
  });

  it('ca init waits, then writes the CA', async () => {
    await waitsForTheLock((d) => ['ca', 'init', '--data-dir', d], 'pki/ca.crt');
  });
});
