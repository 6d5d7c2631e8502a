/**
 * `updraft keys ...`: the operator's Ed25519 software signing key (generate, export the
 * public half for provisioning devices) and the URL signing key ring (list, rotate, retire).
 */
import { mkdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import type { Command } from 'commander';
import type { KeyInfo } from '../artifacts/key-ring.ts';
import { UpdraftError } from '../errors.ts';
import { writeAtomic } from '../pki/certificate-authority.ts';
import { signingKeyFilePath } from '../agent/daemon.ts';
import { generateSigningKey, signingKeyPaths } from '../signing/signing-key.ts';
import { ApiClient, type ApiOptions } from './api-client.ts';

interface Common extends ApiOptions {
  json?: boolean;
}

function withApi(cmd: Command): Command {
  return cmd
    .option('--server <url>', 'Updraft server URL [env UPDRAFT_SERVER, default http://127.0.0.1:8080]')
    .option('--token <token>', 'operator token [env UPDRAFT_TOKEN, default: read from <data-dir>/operator-token]')
    .option('--data-dir <dir>', 'the server data directory holding the operator token', './data')
    .option('--json', 'print JSON');
}

function print(opts: { json?: boolean }, json: unknown, text: string): void {
  process.stdout.write(opts.json ? JSON.stringify(json, null, 2) + '\n' : text + '\n');
}

/** Fetches the server's public signing key and writes it where the agent daemon looks for it. */
export async function saveSigningKey(api: ApiClient, installDir: string): Promise<string> {
  const keys = await api.call<{ signing: { publicKey: string } }>('GET', '/api/v1/keys');
  const file = signingKeyFilePath(installDir);
  await mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
  await writeAtomic(file, keys.signing.publicKey, 0o644);
  return file;
}

function keyLines(keys: KeyInfo[]): string {
  return keys.map((k) => `${k.kid}  ${k.createdAt}${k.active ? '  active (signs new URLs and tokens)' : '  verifies until its URLs expire'}`).join('\n');
}

/** Adds `keys`. */
export function addKeysCommand(program: Command): void {
  const keys = program.command('keys').description('software signing key and URL signing keys');

  keys
    .command('generate')
    .description('make the Ed25519 software signing key in the data directory (the server also makes one on first start)')
    .option('--data-dir <dir>', 'the server data directory', './data')
    .option('--force', 'replace an existing key (every device must then be provisioned with the new public key)')
    .option('--json', 'print JSON')
    .action(async (opts: { dataDir: string; force?: boolean; json?: boolean }) => {
      const key = await generateSigningKey(opts.dataDir, { replace: opts.force === true });
      const p = signingKeyPaths(opts.dataDir);
      print(opts, { keyId: key.keyId, publicKeyFile: p.pub, privateKeyFile: p.key }, `software signing key ${key.keyId}\n  private ${p.key} (mode 0600; restart the server to use it)\n  public  ${p.pub} (provision devices with it: updraft agent --signing-key)`);
    });

  keys
    .command('export-public')
    .description('print the public software signing key (PEM) devices are provisioned with')
    .option('--data-dir <dir>', 'the server data directory', './data')
    .option('--out <file>', 'write it to this file instead')
    .action(async (opts: { dataDir: string; out?: string }) => {
      const file = signingKeyPaths(opts.dataDir).pub;
      const pem = await readFile(file, 'utf8').catch(() => {
        throw new UpdraftError('NOT_FOUND', `no public signing key at ${file}; start the server once or run: updraft keys generate --data-dir ${opts.dataDir}`);
      });
      if (opts.out) {
        await writeAtomic(opts.out, pem, 0o644);
        process.stdout.write(`public signing key written to ${opts.out}\n`);
      } else {
        process.stdout.write(pem);
      }
    });

  withApi(keys.command('list-url').description('the URL signing keys of the running server, active first')).action(async (opts: Common) => {
    const r = await new ApiClient(opts).call<{ url: KeyInfo[]; signing: { keyId: string } }>('GET', '/api/v1/keys');
    print(opts, r.url, keyLines(r.url));
  });

  withApi(keys.command('rotate-url').description('add a new URL signing key in front; URLs signed with older keys stay valid until they expire'))
    .option('--retire <kid>', 'then retire this key: URLs and tokens it signed are refused from now on')
    .action(async (opts: Common & { retire?: string }) => {
      const r = await new ApiClient(opts).call<{ keys: KeyInfo[] }>('POST', '/api/v1/keys/url/rotate', opts.retire !== undefined ? { retire: opts.retire } : {});
      print(opts, r.keys, `rotated: ${r.keys[0]?.kid} signs from now on${opts.retire ? `; ${opts.retire} retired` : ''}\n${keyLines(r.keys)}`);
    });
}
