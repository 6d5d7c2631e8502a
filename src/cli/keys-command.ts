/**
 * `updraft keys ...`: the operator's Ed25519 software signing key (generate, export the
 * public half for provisioning devices), the offline root key that certifies it (generate,
 * certify, install the certificate: docs/security.md) and the URL signing key ring (list,
 * rotate, retire).
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { Command } from 'commander';
import { rotateKeyRing, type KeyInfo } from '../artifacts/key-ring.ts';
import { UpdraftError } from '../errors.ts';
import { writeFileAtomic } from '../util/atomic-file.ts';
import { makeOutputDir, writeOutputFile } from './output-file.ts';
import { rootKeyFilePath, signingKeyFilePath } from '../agent/provisioning.ts';
import { parseKeyCertificate, type KeyCertificate } from '../protocol/key-certificate.ts';
import { parseRootRotation, parseRootRotations, type RootRotation } from '../protocol/root-rotation.ts';
import { certifySigningKey, generateRootKey, installKeyCertificate, readRootPrivateKey, rotateRoot } from '../signing/root-key.ts';
import { generateSigningKey, loadSigningKey, readPublicKey, signingKeyPaths } from '../signing/signing-key.ts';
import type { SharedSecretName } from '../server/shared-secrets.ts';
import { ApiClient, type ApiOptions } from './api-client.ts';
import { CONFIG_FILE_HELP, configuredDataDir, dataDirOption } from './data-dir-option.ts';
import { whileWritingOffline } from './offline-lock.ts';
import { refuseServerOptions } from './offline-options.ts';
import { makeDir } from '../util/make-dir.ts';

interface Common extends ApiOptions {
  json?: boolean;
}

function withApi(cmd: Command): Command {
  return cmd
    .option('--server <url>', 'Updraft server URL [env UPDRAFT_SERVER, default http://127.0.0.1:8080]')
    .option('--token <token>', 'operator token [env UPDRAFT_TOKEN, default: read from <data-dir>/operator-token]')
    .addOption(dataDirOption('the server data directory holding the operator token'))
    .option('--json', 'print JSON');
}

function print(opts: { json?: boolean }, json: unknown, text: string): void {
  process.stdout.write(opts.json ? JSON.stringify(json, null, 2) + '\n' : text + '\n');
}

/**
 * Fetches the server's public signing key, and the root's when the server has a certificate
 * from one, and writes them where the agent daemon looks for them (it prefers the root).
 */
export async function saveSigningKey(api: ApiClient, installDir: string): Promise<{ keyFile: string; rootFile?: string }> {
  const keys = await api.call<{ signing: { publicKey: string }; root: { publicKey: string } | null }>('GET', '/api/v1/keys');
  const keyFile = signingKeyFilePath(installDir);
  await makeDir(path.dirname(keyFile), 0o700);
  await writeFileAtomic(keyFile, keys.signing.publicKey, 0o644);
  if (!keys.root) return { keyFile };
  const rootFile = rootKeyFilePath(installDir);
  await writeFileAtomic(rootFile, keys.root.publicKey, 0o644);
  return { keyFile, rootFile };
}

/** Reads a rotation file written by `keys root-rotate` (one rotation, or a chain of them); BAD_REQUEST naming what is wrong. */
async function readRotationFile(file: string): Promise<RootRotation[]> {
  const text = await readFile(file, 'utf8').catch((err: Error) => {
    throw new UpdraftError('BAD_REQUEST', `cannot read the root rotation ${file}: ${err.message}`);
  });
  try {
    const value: unknown = JSON.parse(text);
    return Array.isArray(value) ? parseRootRotations(value, file) : [parseRootRotation(value, file)];
  } catch (err) {
    throw new UpdraftError('BAD_REQUEST', `${file} is not a root rotation: ${(err as Error).message}`);
  }
}

/** Reads a certificate file written by `keys certify`; BAD_REQUEST naming what is wrong. */
async function readCertificateFile(file: string): Promise<KeyCertificate> {
  const text = await readFile(file, 'utf8').catch((err: Error) => {
    throw new UpdraftError('BAD_REQUEST', `cannot read the certificate ${file}: ${err.message}`);
  });
  try {
    return parseKeyCertificate(JSON.parse(text), file);
  } catch (err) {
    throw new UpdraftError('BAD_REQUEST', `${file} is not a key certificate: ${(err as Error).message}`);
  }
}

function certificateLine(c: KeyCertificate): string {
  return `certificate ${c.serial} of signing key ${c.keyId} by root ${c.rootKeyId}, valid until ${new Date(c.expiresAt * 1000).toISOString()}`;
}

function keyLines(keys: KeyInfo[]): string {
  return keys
    .map((k) => `${k.kid}  ${k.createdAt}${k.active ? '  active (signs new URLs and tokens)' : k.activeFrom ? `  staged: verifies now, signs from ${k.activeFrom}` : '  verifies until its URLs expire'}`)
    .join('\n');
}

/** `90`, `30s`, `10m`, `1h`, `2d` as seconds; BAD_REQUEST naming the flag otherwise. */
export function parseDuration(flag: string, text: string): number {
  const m = /^(\d+)([smhd]?)$/.exec(text.trim());
  if (!m) throw new UpdraftError('BAD_REQUEST', `${flag} must be a duration like 90, 30s, 10m, 1h or 2d, got ${text}`);
  return Number(m[1]) * { '': 1, s: 1, m: 60, h: 3600, d: 86_400 }[m[2] as '' | 's' | 'm' | 'h' | 'd'];
}

/**
 * After an offline change of a data directory's shared secrets: recorded in the PostgreSQL
 * store of the settings (`--db`, `--config`, UPDRAFT_DB), so instances given the new files
 * start and those with the old ones are told (server/shared-secrets.ts). Lines to print; a
 * store that cannot be reached is a warning (the files are changed already), with the
 * command that records them later.
 */
export async function recordAfterOffline(opts: { dataDir: string; db?: string; config?: string }, names: readonly SharedSecretName[]): Promise<{ lines: string[]; json: { recordedIn?: string } }> {
  const { recordOffline } = await import('../server/shared-secrets.ts');
  try {
    const r = await recordOffline(opts, names);
    if (!r) return { lines: [], json: {} };
    return { lines: [`  recorded in ${r.where}: instances on it start only with this copy; those holding the old one are told`], json: { recordedIn: r.where } };
  } catch (err) {
    process.stderr.write(`updraft: warning: not recorded in the database (${(err as Error).message}): instances on it refuse to start with the new copy until it is; record it with: updraft keys record-shared --data-dir ${opts.dataDir} --db <url>\n`);
    return { lines: [], json: {} };
  }
}

/** `--db` and `--config` of the commands that record what they change offline. */
function withStore(cmd: Command, what: string): Command {
  return cmd
    .option('--db <url>', `the PostgreSQL store the instances share, as updraft server --db (env UPDRAFT_DB): ${what} is recorded there, so the instances given the new file start and the others are told`)
    .option('--config <file>', CONFIG_FILE_HELP);
}

/** Adds `keys`. */
export function addKeysCommand(program: Command): void {
  const keys = program.command('keys').description('software signing key and URL signing keys');

  withStore(keys.command('generate'), 'the new key')
    .description('make the Ed25519 software signing key in the data directory (the server also makes one on first start)')
    .addOption(dataDirOption('the server data directory'))
    .option('--force', 'replace an existing key: devices provisioned with the old public key must be provisioned again; devices that trust a root key take the new one once its certificate is installed (keys certify, keys install-cert)')
    .option('--json', 'print JSON')
    .action(async (opts: { dataDir: string; db?: string; config?: string; force?: boolean; json?: boolean }, cmd: Command) => {
      opts.dataDir = configuredDataDir(opts, cmd);
      const key = await whileWritingOffline(opts.dataDir, () => generateSigningKey(opts.dataDir, { replace: opts.force === true }));
      const p = signingKeyPaths(opts.dataDir);
      const recorded = await recordAfterOffline(opts, ['software-signing-key']);
      print(opts, { keyId: key.keyId, publicKeyFile: p.pub, privateKeyFile: p.key, ...recorded.json }, [`software signing key ${key.keyId}\n  private ${p.key} (mode 0600; restart the server to use it; several instances: copy both files to every one)\n  public  ${p.pub} (provision devices with it: updraft agent --signing-key; or certify it for devices that trust a root: updraft keys certify, then keys install-cert --offline before the restart)`, ...recorded.lines].join('\n'));
    });

  withStore(keys.command('record-shared'), "this data directory's operator token, signing key, URL key ring and CA")
    .description("record this data directory's shared secrets (operator token, signing key, URL key ring, CA) as the ones every instance on the PostgreSQL database must hold: after replacing one offline without --db. Instances holding other copies are then refused at start")
    .addOption(dataDirOption('the server data directory'))
    .option('--json', 'print JSON')
    .action(async (opts: { dataDir: string; db?: string; config?: string; json?: boolean }, cmd: Command) => {
      opts.dataDir = configuredDataDir(opts, cmd);
      const { recordOffline, SHARED_SECRET_NAMES, SHARED_SECRET_FILES } = await import('../server/shared-secrets.ts');
      const r = await recordOffline(opts, SHARED_SECRET_NAMES);
      if (!r) throw new UpdraftError('BAD_REQUEST', 'no PostgreSQL store given (--db, --config or UPDRAFT_DB): only instances sharing one compare their secrets');
      print(opts, r, `recorded in ${r.where}: ${r.recorded.map((n) => SHARED_SECRET_FILES[n]).join(', ')} of ${opts.dataDir}; instances holding other copies are refused at start, and running ones are told within 30 s`);
    });

  keys
    .command('export-public')
    .description('print the public software signing key (PEM) devices are provisioned with')
    .addOption(dataDirOption('the server data directory'))
    .option('--out <file>', 'write it to this file instead')
    .action(async (opts: { dataDir: string; out?: string }) => {
      const file = signingKeyPaths(opts.dataDir).pub;
      const pem = await readFile(file, 'utf8').catch(() => {
        throw new UpdraftError('NOT_FOUND', `no public signing key at ${file}; start the server once or run: updraft keys generate --data-dir ${opts.dataDir}`);
      });
      if (opts.out) {
        await writeOutputFile('--out', opts.out, pem, 0o644);
        process.stdout.write(`public signing key written to ${opts.out}\n`);
      } else {
        process.stdout.write(pem);
      }
    });

  keys
    .command('root-generate')
    .description('make the offline root key that certifies signing keys: run it on a machine that is not the server, and keep root.key there')
    .requiredOption('--out <dir>', 'directory for root.key (mode 0600) and root.pub')
    .option('--json', 'print JSON')
    .action(async (opts: { out: string; json?: boolean }) => {
      // made here, not by generateRootKey's mkdir -p, which never ends under /proc: see makeOutputDir
      const out = await makeOutputDir('--out', opts.out, 0o700);
      const r = await generateRootKey(opts.out).catch(async (err: unknown) => {
        await out.undo();
        throw err;
      });
      print(opts, r, `root key ${r.keyId}\n  private ${r.keyFile} (mode 0600): keep it offline; it is needed only to certify a signing key\n  public  ${r.publicFile}: give it to the server with its first certificate (updraft keys install-cert --root-public)`);
    });

  keys
    .command('root-rotate')
    .description('replace the offline root key (offline): a new root, and the rotation to it signed by the old root and the new one; devices that trust the old root take the new one from the rotation that every command then carries')
    .requiredOption('--root-key <file>', 'the root private key devices trust now (root.key of keys root-generate)')
    .requiredOption('--out <dir>', 'a new directory for the new root.key (mode 0600), root.pub and root-rotation.json')
    .option('--json', 'print JSON')
    .action(async (opts: { rootKey: string; out: string; json?: boolean }) => {
      const previous = await readRootPrivateKey(opts.rootKey);
      const out = await makeOutputDir('--out', opts.out, 0o700); // as root-generate
      const made = await generateRootKey(opts.out).catch(async (err: unknown) => {
        await out.undo();
        throw err;
      });
      const rotation = rotateRoot(previous, await readRootPrivateKey(made.keyFile));
      const rotationFile = path.join(path.resolve(opts.out), 'root-rotation.json');
      await writeFileAtomic(rotationFile, JSON.stringify(rotation, null, 2) + '\n', 0o644);
      print(
        opts,
        { ...made, previousKeyId: rotation.previousRootKeyId, rotationFile, rotation },
        `root key ${made.keyId} replaces root ${rotation.previousRootKeyId}\n  private  ${made.keyFile} (mode 0600): keep it offline\n  public   ${made.publicFile}\n  rotation ${rotationFile}\nnext: certify the signing key with the new root (updraft keys certify --root-key ${made.keyFile} --serial <above the installed one>), then install both: updraft keys install-cert <certificate> --root-rotation ${rotationFile}`,
      );
    });

  keys
    .command('certify')
    .description("sign a certificate of the server's public signing key with the root key (offline): devices that trust the root trust the key it names")
    .requiredOption('--root-key <file>', 'the root private key (root.key of keys root-generate)')
    .requiredOption('--public-key <file>', "the server's public signing key (updraft keys export-public)")
    .requiredOption('--serial <n>', 'a number above every earlier certificate\'s: devices refuse certificates older than the newest they have seen')
    .requiredOption('--out <file>', 'where to write the certificate (JSON)')
    .option('--valid-days <days>', 'how long devices accept it', '365')
    .option('--json', 'print JSON')
    .action(async (opts: { rootKey: string; publicKey: string; serial: string; out: string; validDays: string; json?: boolean }) => {
      const problems: string[] = [];
      const serial = Number(opts.serial);
      if (!Number.isSafeInteger(serial) || serial < 1) problems.push('--serial must be a whole number of at least 1');
      const days = Number(opts.validDays);
      if (!Number.isFinite(days) || days <= 0 || days > 3650) problems.push('--valid-days must be a number of days from 1 to 3650');
      if (problems.length > 0) throw new UpdraftError('BAD_REQUEST', problems.join('; '));
      const root = await readRootPrivateKey(opts.rootKey);
      const signing = await readPublicKey(opts.publicKey);
      const cert = certifySigningKey(root, signing, serial, Math.floor(Date.now() / 1000 + days * 86_400));
      await writeOutputFile('--out', opts.out, JSON.stringify(cert, null, 2) + '\n', 0o644);
      print(opts, cert, `${certificateLine(cert)}\n  written to ${opts.out}: install it with updraft keys install-cert ${opts.out}`);
    });

  withApi(keys.command('install-cert <file>').description('install a certificate of the signing key (keys certify) on the running server: update commands carry it from now on'))
    .option('--root-public <file>', 'the root public key (root.pub), needed with the first certificate; later ones must come from the same root')
    .option('--root-rotation <file>', 'the rotation to the root of a certificate from a new root (keys root-rotate): the new root replaces the installed one, and every command carries the rotation')
    .option('--offline', 'write it into --data-dir for the next start, without a running server')
    .action(async (file: string, opts: Common & { dataDir: string; rootPublic?: string; rootRotation?: string; offline?: boolean }) => {
      refuseServerOptions(opts, 'installs the certificate into --data-dir for the next start');
      const certificate = await readCertificateFile(file);
      const rootRotations = opts.rootRotation === undefined ? undefined : await readRotationFile(opts.rootRotation);
      const rootPublicKey = opts.rootPublic === undefined ? undefined : await readFile(opts.rootPublic, 'utf8').catch((err: Error) => {
        throw new UpdraftError('BAD_REQUEST', `cannot read the root public key ${opts.rootPublic}: ${err.message}`);
      });
      if (opts.offline) {
        const installed = await whileWritingOffline(opts.dataDir, async () => {
          const key = await loadSigningKey(opts.dataDir);
          if (!key) throw new UpdraftError('NOT_FOUND', `no software signing key in ${opts.dataDir}; start the server once or run: updraft keys generate --data-dir ${opts.dataDir}`);
          return installKeyCertificate(opts.dataDir, key, certificate, { ...(rootPublicKey !== undefined ? { rootPublicKeyPem: rootPublicKey } : {}), ...(rootRotations ? { rootRotations } : {}) });
        }, { missing: 'it holds no software signing key to install the certificate for' });
        print(opts, { certificate, rootRotations: installed.rootRotations, replacedRoot: installed.replacedRootKeyId ?? null }, `installed ${certificateLine(certificate)}${rotationNote(installed.replacedRootKeyId, certificate)} in ${opts.dataDir}; the server sends it from its next start`);
        return;
      }
      const r = await new ApiClient(opts).call<{ certificate: KeyCertificate; root: { replaced?: string | null } }>('PUT', '/api/v1/keys/signing/certificate', { certificate, ...(rootPublicKey !== undefined ? { rootPublicKey } : {}), ...(rootRotations ? { rootRotations } : {}) });
      print(opts, r, `installed ${certificateLine(r.certificate)}${rotationNote(r.root.replaced ?? undefined, r.certificate)}; update commands carry it from now on`);
    });

  withApi(keys.command('show').description('the running server\'s signing key, its certificate from the offline root (and when it expires), and URL signing keys')).action(async (opts: Common) => {
    const r = await new ApiClient(opts).call<{ signing: { keyId: string; certificate: KeyCertificate | null }; root: { keyId: string; rotations?: RootRotation[] } | null; url: KeyInfo[] }>('GET', '/api/v1/keys');
    const c = r.signing.certificate;
    const days = c ? Math.floor((c.expiresAt * 1000 - Date.now()) / 86_400_000) : 0;
    const certLine = !c
      ? 'certificate: none (devices are provisioned with the signing key itself)'
      : `${certificateLine(c)}${days < 0 ? ': EXPIRED, devices that trust the root refuse every update' : days < 30 ? `: ${days} day(s) left, renew it (keys certify, keys install-cert)` : ` (${days} days left)`}`;
    const rotations = r.root?.rotations ?? [];
    const rootLine = rotations.length > 0 ? `\nroot ${r.root!.keyId}, rotated from ${[rotations[0]!.previousRootKeyId, ...rotations.map((x) => x.rootKeyId)].join(' -> ')}: commands carry the rotations` : '';
    print(opts, r, `signing key ${r.signing.keyId}\n${certLine}${rootLine}\nURL signing keys:\n${keyLines(r.url)}`);
  });

  withApi(keys.command('list-url').description('the URL signing keys of the running server, active first')).action(async (opts: Common) => {
    const r = await new ApiClient(opts).call<{ url: KeyInfo[]; signing: { keyId: string } }>('GET', '/api/v1/keys');
    print(opts, r.url, keyLines(r.url));
  });

  withApi(keys.command('rotate-url').description('add a new URL signing key in front; URLs signed with older keys stay valid until they expire'))
    .option('--retire <kid>', 'then retire this key: URLs and tokens it signed are refused from now on')
    .option('--activate-in <duration>', 'stage the new key: it verifies at once and signs only after this (e.g. 1h), time to give it to every instance of a cluster')
    .option('--offline', 'change the key ring in --data-dir (a stopped server, or the copy for the other instances) instead of the running server')
    .option('--db <url>', 'with --offline: the PostgreSQL store the instances share, as updraft server --db (env UPDRAFT_DB): the new ring is recorded there, so the instances given it start and the others are told')
    .option('--config <file>', "with --offline: the server's JSON configuration file, for dataDir and db")
    .action(async (opts: Common & { dataDir: string; retire?: string; activateIn?: string; offline?: boolean; db?: string; config?: string }, cmd: Command) => {
      if (opts.offline) opts.dataDir = configuredDataDir(opts, cmd);
      refuseServerOptions(opts, "changes --data-dir's key ring for the next start");
      const delay = opts.activateIn === undefined ? undefined : parseDuration('--activate-in', opts.activateIn);
      let list: KeyInfo[];
      let recorded: string[] = [];
      if (opts.offline) {
        list = await whileWritingOffline(opts.dataDir, () => rotateKeyRing(opts.dataDir, { add: true, ...(delay ? { activateAt: Date.now() + delay * 1000 } : {}), ...(opts.retire !== undefined ? { retire: opts.retire } : {}) }), { missing: 'it holds no URL key ring to rotate' });
        recorded = (await recordAfterOffline(opts, ['url-signing-keys'])).lines;
      } else {
        if (opts.db !== undefined || opts.config !== undefined) throw new UpdraftError('BAD_REQUEST', '--db and --config go with --offline (online, the running server records the new ring itself)');
        const r = await new ApiClient(opts).call<{ keys: KeyInfo[]; warning?: string }>('POST', '/api/v1/keys/url/rotate', { ...(opts.retire !== undefined ? { retire: opts.retire } : {}), ...(delay !== undefined ? { activateInSeconds: delay } : {}) });
        list = r.keys;
        if (r.warning !== undefined && !opts.json) process.stderr.write(`updraft: warning: ${r.warning}\n`);
      }
      const added = list[0]!;
      const when = added.activeFrom ? `signs from ${added.activeFrom} (verifies already)` : 'signs from now on';
      const where = opts.offline ? ` in ${opts.dataDir} (copy keys/url-signing.json to every instance, then restart them${added.activeFrom ? ' before then' : ''})` : '';
      print(opts, list, [`rotated: ${added.kid} ${when}${opts.retire ? `; ${opts.retire} retired` : ''}${where}`, ...recorded, keyLines(list)].join('\n'));
    });
}

/** What an installation did to the root: nothing, or replace it. */
function rotationNote(replaced: string | undefined, certificate: KeyCertificate): string {
  if (replaced === undefined) return '';
  return `; root ${replaced} is replaced by ${certificate.rootKeyId}: devices that trust the old root take the new one with their next command, and refuse the old one from then on`;
}
