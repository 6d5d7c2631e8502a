/** `updraft ca init|rollover|drop-previous`: Updraft's own certificate authority for device client certificates. */
import { existsSync } from 'node:fs';
import path from 'node:path';
import type { Command } from 'commander';
import { UpdraftError } from '../errors.ts';
import { CONFIG_FILE_HELP, configuredDataDir, dataDirOption } from './data-dir-option.ts';
import { whileWritingOffline } from './offline-lock.ts';

const day = (ms: number) => new Date(ms).toISOString().slice(0, 10);

/**
 * Refuses to change the CA under a server running on `dataDir`: it holds the CA in memory and
 * would go on issuing (renewals, server certificates) from the old one, and accepting what it
 * accepted, until its restart; the switch is made while it is stopped, then it is started.
 */
async function refuseWhileServing(dataDir: string, change: 'switch to the new CA' | 'drop the previous CA'): Promise<void> {
  const { serverHeldFile } = await import('../server/data-dir-lock.ts'); // better-sqlite3: loaded only to run
  const held = serverHeldFile(dataDir);
  // said in the command's own words: a drop said "switch" (QA, 2026-12-06)
  if (held !== undefined) throw new UpdraftError('CONFLICT', `a server runs on ${dataDir} (its ${held} is open): stop it first; the server reads the CA at start, so ${change} while it is stopped, then start it`);
}

/**
 * Refuses an offline command given no PostgreSQL store (--db, --config, UPDRAFT_DB) on a data
 * directory whose server last started on PostgreSQL (server/store-kind.ts): `why` says what
 * the store was needed for.
 */
async function refuseUnnamedPostgres(opts: { dataDir: string; db?: string; config?: string }, why: string): Promise<void> {
  const [{ loadConfig }, { unnamedPostgres }] = await Promise.all([import('../config/load-config.ts'), import('../server/store-kind.ts')]);
  const config = loadConfig({ ...(opts.config !== undefined ? { file: opts.config } : {}), env: process.env, flags: { 'data-dir': opts.dataDir, db: opts.db } });
  if (config.db) return;
  const postgres = await unnamedPostgres(path.resolve(config.dataDir));
  if (postgres !== undefined) throw new UpdraftError('BAD_REQUEST', `${postgres}; ${why}`);
}

/** Adds `ca`. */
export function addCaCommand(program: Command): void {
  const ca = program.command('ca').description("Updraft's certificate authority for MQTT over TLS with client certificates");
  ca.command('init')
    .description('create the CA in the data directory (the server also creates it on first start); refuses to replace one (updraft ca rollover does)')
    .addOption(dataDirOption('the server data directory'))
    .option('--name <cn>', 'subject common name of the CA', 'Updraft device CA')
    .action(async (opts: { dataDir: string; name: string }) => {
      const { caPaths, createCa } = await import('../pki/certificate-authority.ts'); // node-forge: loaded only to run
      // under the lock a starting server takes to create its CA (cli/offline-lock.ts)
      await whileWritingOffline(opts.dataDir, () => createCa(opts.dataDir, opts.name));
      const p = caPaths(opts.dataDir);
      process.stdout.write(`CA created\n  certificate ${p.cert} (give it to devices: updraft agent --ca)\n  key         ${p.key} (mode 0600; never leaves the server)\n`);
    });

  ca.command('rollover')
    .description("replace the CA without re-provisioning devices: the current CA becomes the previous one (pki/previous-ca.crt), whose client certificates are still accepted until it expires, and devices renew onto the new one by themselves. With --prepare, only make the next CA (pki/next-ca.crt) to give devices first; the server must be stopped for the switch")
    .addOption(dataDirOption('the server data directory'))
    .option('--name <cn>', 'subject common name of the new CA (default: the current name with the date); it must differ from the current one')
    .option('--prepare', 'make the next CA only (pki/next-ca.crt, pki/next-ca.key), changing nothing the server uses: give devices a --ca bundle of both before the switch')
    .option('--db <url>', 'the PostgreSQL store the instances share, as updraft server --db (env UPDRAFT_DB): the new CA is recorded there, so instances given the new files start')
    .option('--config <file>', CONFIG_FILE_HELP)
    .action(async (opts: { dataDir: string; name?: string; prepare?: boolean; db?: string; config?: string }, cmd: Command) => {
      opts.dataDir = configuredDataDir(opts, cmd);
      const { caPaths, prepareNextCa, rolloverCa } = await import('../pki/certificate-authority.ts');
      const p = caPaths(opts.dataDir);
      if (opts.prepare) {
        const next = await whileWritingOffline(opts.dataDir, () => prepareNextCa(opts.dataDir, opts.name), { missing: 'it holds no CA to prepare the next of (updraft ca init makes one)' });
        process.stdout.write(
          `next CA prepared (valid until ${day(next.notAfter)}); the server does not use it yet\n` +
            `  certificate ${p.nextCert}\n  key         ${p.nextKey} (mode 0600)\n` +
            `give every device a --ca bundle of both CAs: cat ${p.cert} ${p.nextCert} > ca-bundle.crt\n` +
            `then switch (server stopped): updraft ca rollover --data-dir ${opts.dataDir}\n`,
        );
        return;
      }
      await refuseWhileServing(opts.dataDir, 'switch to the new CA');
      await refuseUnnamedPostgres(opts, 'give that store with --db <url> or --config <file>: the new CA is recorded there (instances on it refuse to start with a CA it does not name); not rolled over, nothing changed');
      const r = await whileWritingOffline(opts.dataDir, () => rolloverCa(opts.dataDir, opts.name), { missing: 'it holds no CA to replace (updraft ca init makes one)' });
      const lines = [
        r.resumed
          ? `CA rolled over: a rollover stopped midway was finished (the new key was in place, its certificate still ${p.nextCert}); it issues everything from the next start (valid until ${day(r.notAfter)})`
          : `CA rolled over${r.prepared ? ' to the prepared next CA' : ''}: it issues everything from the next start (valid until ${day(r.notAfter)})`,
        `  certificate ${p.cert}${r.prepared ? '' : ' (give it to devices, in a --ca bundle with the previous one)'}`,
        `  key         ${p.key} (mode 0600)`,
        `  previous    ${p.previous}: devices' client certificates it issued are accepted until ${day(r.previousNotAfter)}; its key is kept as ${p.previousKey} (mode 0600) only to sign its CRL (mosquitto-config --updraft-ca), until updraft ca drop-previous sets it aside`,
        `devices that renew their certificates (updraft agent --cert --key, with the new CA in --ca) move to the new CA soon after they connect`,
        `several instances: copy pki/ca.crt, pki/ca.key, pki/previous-ca.crt and pki/previous-ca.key to every one before starting it`,
      ];
      try {
        const { recordOffline } = await import('../server/shared-secrets.ts');
        const rec = await recordOffline(opts, ['ca']);
        if (rec) lines.push(`  recorded in ${rec.where}: instances on it start only with the new CA; those holding the old one are told`);
      } catch (err) {
        process.stderr.write(`updraft: warning: not recorded in the database (${(err as Error).message}): instances on it refuse to start with the new CA until it is; record it with: updraft keys record-shared --data-dir ${opts.dataDir} --db <url>\n`);
      }
      process.stdout.write(`${lines.join('\n')}\n`);
    });

  ca.command('drop-previous')
    .description('end a rollover: remove the previous CA (pki/previous-ca.crt), so that client certificates it issued are refused from the next start; refused while devices not revoked report certificates of it and it has not expired (--force drops anyway)')
    .addOption(dataDirOption('the server data directory'))
    .option('--db <url>', 'the PostgreSQL store the instances share, as updraft server --db (env UPDRAFT_DB): the devices still on the previous CA are counted there')
    .option('--config <file>', CONFIG_FILE_HELP)
    .option('--force', 'drop it even when devices still report certificates of it, or when they cannot be counted: those devices are refused from the next start')
    .action(async (opts: { dataDir: string; db?: string; config?: string; force?: boolean }, cmd: Command) => {
      opts.dataDir = configuredDataDir(opts, cmd);
      const { caPaths, dropPreviousCa } = await import('../pki/certificate-authority.ts');
      const p = caPaths(opts.dataDir);
      await refuseWhileServing(opts.dataDir, 'drop the previous CA');
      const counted = await countBeforeDrop(opts, p);
      const dropped = await whileWritingOffline(opts.dataDir, () => dropPreviousCa(opts.dataDir), { missing: 'it holds no previous CA to remove' });
      if (!dropped) {
        process.stdout.write('no previous CA: nothing to remove\n');
        return;
      }
      const lines = [`previous CA removed (${p.previous}); several instances: remove it from every one`];
      if (counted) lines.push(`  ${counted}`);
      // the key too (where the rollover kept one): an undo without it gets no CRL of the previous CA
      const keyAside = existsSync(p.droppedKey);
      lines.push(`  kept as ${p.dropped}${keyAside ? `, its key as ${p.droppedKey} (mode 0600)` : ''} (nothing reads ${keyAside ? 'them' : 'it'}); to undo, with the server stopped: mv -n ${p.dropped} ${p.previous}${keyAside ? ` && mv -n ${p.droppedKey} ${p.previousKey}` : ''}, then start it`);
      process.stdout.write(`${lines.join('\n')}\n`);
    });
}

/**
 * Before drop-previous: counts, in the store the server uses, the devices whose agents
 * reported a client certificate of the previous CA, and refuses (CONFLICT, one line: how many,
 * how to list them, --force) while there are any, since they are refused from the next start
 * and their renewal onto the current CA needs a connection. Revoked devices are said apart and
 * not refused for: the renewal refuses them, so they could never move. Nor is anything refused
 * once the previous CA has expired: the server ignores it already, its devices are refused
 * since then, and dropping it changes nothing for them. Resolves with what to say after the
 * drop (undefined: nothing to count, or forced past a refusal that was already said).
 */
async function countBeforeDrop(opts: { dataDir: string; db?: string; config?: string; force?: boolean }, p: { cert: string; previous: string }): Promise<string | undefined> {
  const { countDevicesByCa, listCommand, readCaFile } = await import('./previous-ca-devices.ts');
  const previous = await readCaFile(p.previous);
  if (previous === undefined) return undefined;
  const { X509Certificate } = await import('node:crypto');
  const expiry = Date.parse(new X509Certificate(previous).validTo);
  const expired = expiry <= Date.now();
  const none = 'devices that never report an issuer (not an Updraft agent of 2026-12-06 or later with a client certificate) are not counted';
  let c: Awaited<ReturnType<typeof countDevicesByCa>>;
  try {
    c = await countDevicesByCa(opts, previous, await readCaFile(p.cert));
  } catch (err) {
    const why = `the devices still on the previous CA could not be counted (${(err as Error).message.split('\n')[0]})`;
    if (expired) return `the previous CA expired on ${day(expiry)}: its devices were refused already since then; ${why}`;
    if (!opts.force) throw new UpdraftError('UNAVAILABLE', `${why}: not dropped; give the store the server uses (--db <url> or --config <file>), or drop it anyway with --force`);
    process.stderr.write(`updraft: warning: ${why}; dropped anyway (--force)\n`);
    return undefined;
  }
  const list = listCommand(c.previousQuery);
  // revoked devices on it are refused anyway: said, never refused for
  const revoked = c.revokedOnPrevious > 0 ? ` (besides ${c.revokedOnPrevious} revoked, refused anyway)` : '';
  const listed = c.revokedOnPrevious > 0 ? `${list}; revoked ones are listed too` : list;
  if (expired) {
    const on = c.onPrevious + c.revokedOnPrevious;
    const where = c.from === undefined ? `no devices counted (${opts.dataDir} has no store yet)` : `counted in ${c.from}: ${on} device(s) reported a client certificate of it`;
    const them = on > 0 ? `; they were refused already since then (the server ignores an expired previous CA): give each a certificate of the current CA (updraft device cert <id>; list them: ${list})` : '';
    return `the previous CA expired on ${day(expiry)}; ${where}${them}`;
  }
  if (c.onPrevious > 0) {
    const some = `${c.onPrevious} device(s) reported a client certificate of the previous CA (${c.previousSubject})${c.from ? ` in ${c.from}` : ''}${revoked}`;
    if (!opts.force) throw new UpdraftError('CONFLICT', `${some}: dropping it locks them out from the next start; let them move to the current CA first (list them: ${listed}), or drop it anyway with --force`);
    process.stderr.write(`updraft: warning: ${some}: dropped anyway (--force); they are refused from the next start (list them: ${listed})\n`);
    return undefined;
  }
  if (c.from === undefined) return `no devices counted: ${opts.dataDir} has no store yet (updraft.db)`;
  const current = c.onCurrent === undefined ? '' : `, ${c.onCurrent} on the current CA`;
  return `counted in ${c.from}: 0 devices on the previous CA${revoked}${current}, ${c.unreported} reporting no issuer; ${none}`;
}
