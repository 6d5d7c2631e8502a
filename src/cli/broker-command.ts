/**
 * `updraft broker mosquitto-config`: writes mosquitto.conf, passwd and acl for an external
 * Mosquitto 2 from the device registry (read through the API). The registry keeps each
 * secret's Mosquitto hash since it is issued (registration, rotation); devices registered
 * before that can be admitted with `--secrets` (lines `deviceId secret`) or by rotating
 * their secret. Those without either are listed; revoked ones are left out. With `--watch`
 * it keeps running and keeps the password file current (cli/mosquitto-watch.ts). With
 * `--offline` it reads the data directory and the state store instead of the API
 * (cli/broker-offline.ts): the broker of `--mqtt-url` instances is set up before they start.
 * With `--updraft-ca` devices log in with client certificates of Updraft's CA: it writes
 * `client-ca.crt` (the current CA and, during a CA rollover, the previous one while it is
 * valid) as the device listener's cafile, so Mosquitto accepts what the embedded broker would,
 * and `crl.pem` as its crlfile: deleted devices' certificates (cli/mosquitto-crl.ts).
 */
import { createHash } from 'node:crypto';
import { open, readFile, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { Option, type Command } from 'commander';
import { COLON_ID_REASON, mosquittoAcl, mosquittoConf, mosquittoPasswd, parseSecrets, type MosquittoListeners, type RegisteredDevice } from '../broker/mosquitto-config.ts';
import { loadConfig } from '../config/load-config.ts';
import { UpdraftError } from '../errors.ts';
import type { ClientCaBundle } from '../pki/certificate-authority.ts';
import type { RevokedEntry } from '../store/state-store.ts';
// through a temp file and a rename: Mosquitto reloading on SIGHUP never reads half a file
import { writeFileAtomic } from '../util/atomic-file.ts';
import { createLogger, type LogFormat, type Logger } from '../util/logger.ts';
import { safeUrl } from '../util/redact-url.ts';
import { ApiClient, type ApiOptions } from './api-client.ts';
import { brokerCredentials } from './broker-credentials.ts';
import { resolveFileGroup, rootWithoutGroupWarning, shareWithGroup } from './broker-file-group.ts';
import { offlineCredentials } from './broker-offline.ts';
import { newerCrls, notYetValid } from './crl-order.ts';
import { watchMosquittoPasswd } from './mosquitto-watch.ts';
import { CLIENT_CA_FILE, CRL_FILE, coveringBundle, crlFileCovers, crlFromServer, crlSummary, type CrlOutcome } from './mosquitto-crl.ts';
import { makeOutputDir } from './output-file.ts';

/** The PKI (node-forge) loaded only when a CA bundle is asked for: `updraft --help` and the API commands load none (test/cli/cli-startup.test.ts). */
async function readClientCaBundle(dataDir: string): Promise<ClientCaBundle> {
  return (await import('../pki/certificate-authority.ts')).readClientCaBundle(dataDir);
}

/** `--offline`: the CRL made here from `dataDir`'s CAs (their keys included) and the store's revoked certificates. */
async function crlOffline(dataDir: string, revoked: RevokedEntry[]): Promise<CrlOutcome> {
  const { crlFile, revocationsOf } = await import('../pki/revocation-list.ts');
  return crlFile(dataDir, revocationsOf(revoked));
}

interface Options extends ApiOptions {
  out: string;
  secrets?: string;
  deviceHost: string;
  devicePort: string;
  serviceHost: string;
  servicePort: string;
  tlsCert?: string;
  tlsKey?: string;
  tlsCa?: string;
  updraftCa?: boolean;
  watch?: boolean;
  reloadCommand?: string;
  group?: string;
  resyncMinutes: string;
  requestTimeoutSeconds: string;
  logFormat: string;
  maxPacketBytes: string;
  offline?: boolean;
  db?: string;
  config?: string;
}

/** Adds `broker mosquitto-config`. */
export function addBrokerCommands(program: Command): void {
  const broker = program.command('broker').description('configure an external MQTT broker');
  broker
    .command('mosquitto-config')
    .description('write mosquitto.conf, passwd and acl for Mosquitto 2 from the device registry')
    .requiredOption('--out <dir>', 'directory to write the three files into')
    .option('--secrets <file>', 'secrets of devices registered without a kept broker hash, one "deviceId secret" per line')
    .option('--device-host <host>', 'interface of the device listener', '0.0.0.0')
    .option('--device-port <port>', 'port of the device listener (8883 with TLS)', '1883')
    .option('--service-host <host>', 'interface of the listener for Updraft instances (keep it private)', '127.0.0.1')
    .option('--service-port <port>', 'port of the listener for Updraft instances', '1884')
    .option('--tls-cert <file>', 'server certificate (PEM) for the device listener')
    .option('--tls-key <file>', 'server private key (PEM) for the device listener')
    .option('--tls-ca <file>', "the device listener's cafile (PEM): Mosquitto asks for no client certificate with it alone, devices log in with their passwords; for certificate logins use --updraft-ca")
    .option('--updraft-ca', "certificate logins: devices log in with a client certificate of Updraft's CA (its CN is the user name), the password file is not used on the device listener (a revoked device's certificate still gets in, but the acl denies it every topic; a deleted one's is refused by crl.pem, the listener's crlfile, for certificates issued since 2026-12-06: docs/security.md); writes client-ca.crt (pki/ca.crt, and during a CA rollover pki/previous-ca.crt while it is valid) from --data-dir as the cafile, and crl.pem (one CRL per CA, valid as long as its CA; regenerate and reload after deletions: Mosquitto rereads it on SIGHUP); regenerate after updraft ca rollover and drop-previous (--watch rereads the CAs when its event stream reconnects and every --resync-minutes); Mosquitto reads it at start only: restart it after a change")
    .option('--max-packet-bytes <n>', "largest MQTT packet the broker takes (max_packet_size); keep it at least 4 times the server's --shadow-max-bytes", '65536')
    .option('--server <url>', 'Updraft server URL (env UPDRAFT_SERVER)')
    .option('--token <token>', 'operator token (env UPDRAFT_TOKEN); also the password of the operator MQTT user')
    .option('--data-dir <dir>', 'where to find the operator token file (env UPDRAFT_DATA_DIR, default ./data)')
    .option('--offline', "without a running server: the operator token from --data-dir's operator-token, the registry from the state store (--db, or the data directory's SQLite file); how the broker of --mqtt-url instances is set up before the first one starts")
    .option('--db <url>', 'with --offline: the state store, as updraft server --db (env UPDRAFT_DB)')
    .option('--config <file>', "with --offline: the server's JSON configuration file, for dataDir and db")
    .option('--watch', 'keep running: rewrite passwd (and acl, which denies revoked devices every topic; with --updraft-ca crl.pem, at each deletion and daily) as devices are registered, revoked, reinstated, deleted or given a new secret (on any instance), and reload the broker')
    .option('--reload-command <cmd>', 'with --watch: run with /bin/sh -c after each change of passwd (e.g. "systemctl reload mosquitto", "kill -HUP $(cat /run/mosquitto.pid)")')
    .option('--group <name>', 'write passwd mode 0640 with this group (the one Mosquitto runs as, e.g. mosquitto), so that Mosquitto, dropped to its own user, reads it at start and at each reload; without it passwd is 0600, this user\'s')
    .option('--resync-minutes <n>', 'with --watch: read the whole registry at least this often, for changes whose events were missed', '10')
    .option('--request-timeout-seconds <n>', "with --watch: give up a request of a pass (a registry page, the CRL) that has no answer within this many seconds (1 to 300), or whose answer stops coming for as long, or comes slower than 8 KiB/s over twice as long (a large CRL that keeps coming is not cut), and try the pass again: a server or proxy that never answers would hold up every change, deletions included, for 5 minutes (not the event stream, which has its own heartbeat check)", '30')
    .addOption(new Option('--log-format <format>', 'with --watch: text, or json (one object per line)').choices(['text', 'json']).default('text'))
    .action(async (opts: Options, cmd: Command) => {
      if (Boolean(opts.tlsCert) !== Boolean(opts.tlsKey)) throw new UpdraftError('BAD_REQUEST', '--tls-cert and --tls-key go together');
      // each of these was dropped without a word: a broker without the client-certificate check, a watch setting never used
      if (opts.tlsCa !== undefined && !opts.tlsCert) throw new UpdraftError('BAD_REQUEST', '--tls-ca goes with --tls-cert and --tls-key: client certificates are asked for on the TLS device listener');
      if (opts.updraftCa && !opts.tlsCert) throw new UpdraftError('BAD_REQUEST', '--updraft-ca goes with --tls-cert and --tls-key: client certificates are asked for on the TLS device listener');
      if (opts.updraftCa && opts.tlsCa !== undefined) throw new UpdraftError('BAD_REQUEST', "--updraft-ca and --tls-ca do not go together: --updraft-ca writes the cafile from Updraft's CA, --tls-ca names your own");
      if (!opts.watch) {
        const given = (['reloadCommand', 'resyncMinutes', 'requestTimeoutSeconds', 'logFormat'] as const).filter((k) => cmd.getOptionValueSource(k) === 'cli');
        const flag = (k: string) => `--${k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
        if (given.length > 0) throw new UpdraftError('BAD_REQUEST', `${given.map(flag).join(', ')} ${given.length === 1 ? 'goes' : 'go'} with --watch`);
      }
      const resyncMinutes = Number(opts.resyncMinutes);
      if (!Number.isFinite(resyncMinutes) || resyncMinutes <= 0 || resyncMinutes > 24 * 60) throw new UpdraftError('BAD_REQUEST', `--resync-minutes must be a number of minutes from above 0 to 1440, got ${opts.resyncMinutes}`);
      // a decimal number as written (Number() took ' 5 ', 0x1e and 1e-9); from 1 s: below it, a
      // server's ordinary latency fails the pass; above 300 s undici's own limits (300 s to the
      // head, 300 s between two pieces of the body) come first
      const requestTimeoutSeconds = /^\d+(\.\d+)?$/.test(opts.requestTimeoutSeconds) ? Number(opts.requestTimeoutSeconds) : NaN;
      if (!(requestTimeoutSeconds >= 1 && requestTimeoutSeconds <= 300)) throw new UpdraftError('BAD_REQUEST', `--request-timeout-seconds must be a number of seconds from 1 to 300, got ${JSON.stringify(opts.requestTimeoutSeconds)}`);
      checkOffline(opts);
      const secrets = opts.secrets ? await readSecrets(opts.secrets) : new Map<string, string>();
      // an unknown group, or one this user cannot give a file to, is said before anything is written
      const group = opts.group !== undefined ? await resolveFileGroup('--group', opts.group) : undefined;
      const dir = path.resolve(opts.out);
      // every option checked (ports, packet size) before the server is asked anything
      const written = listeners(opts, dir);
      // with certificate logins, the crlfile is named only when a CRL could be made (mosquitto-crl.ts)
      const confWith = (crl: boolean) => mosquittoConf(crl && written.tls ? { ...written, tls: { ...written.tls, crlfile: path.join(dir, CRL_FILE) } } : written);
      // Mosquitto 2.0 rereads passwd and acl on SIGHUP, a listener's cafile only at start: a
      // reload left a dropped CA's certificates admitted (QA of the CA rollover, 2026-12-06)
      const cafileIsUpdraftCa = written.tls?.cafile === path.join(dir, CLIENT_CA_FILE);
      // read before anything is written or asked: a data directory without a CA is said at once
      const caDir = opts.updraftCa ? updraftCaDataDir(opts) : undefined;
      let clientCa = caDir !== undefined ? await readClientCaBundle(caDir) : undefined;
      if (opts.watch) {
        // no read waits through a server that cannot answer (UPDRAFT_RETRY_FOR): the watch
        // retries its passes itself, and a pass held up would hold up the CAs' reread owed; nor
        // does one wait for a server that took the request and does not answer: one pass runs
        // at a time, and deletions wait behind it (--request-timeout-seconds, request-deadline.ts)
        // the stop (SIGTERM, SIGINT) ends a request in flight too: one held (a stalled CRL) held the
        // exit for up to the timeout, and the pass then went on writing and reloading (review of 090236f)
        const ctl = new AbortController();
        const api = new ApiClient({ ...opts, retryForMs: 0, requestTimeoutMs: requestTimeoutSeconds * 1000, signal: ctl.signal });
        await makeOutputDir('--out', opts.out);
        const logger = createLogger({ format: opts.logFormat as LogFormat, component: 'mosquitto-watch' });
        let clientCaWritten = false;
        /**
         * Whether crl.pem, as it is on disk now, holds a CRL signed by every CA of `caPem`: while
         * it does, crlfile stays named. Read, not remembered: a one-off mosquitto-config run
         * between two passes rewrites (or removes) crl.pem and mosquitto.conf, and the watch's
         * memory of what it wrote then left crlfile out, or named, wrongly (review, 2026-12-07).
         */
        let coversKnown: { file: string; caPem: string; covers: boolean } | undefined;
        const fileCovers = async (caPem: string) => {
          // the answer for crl.pem as it is (inode, size, change time: every write, this watch's
          // or a one-off run's, renames a new file in, and an edit in place changes ctime) is kept:
          // the check decodes and verifies the whole file, 377 ms at 1,000,000 entries, and was
          // made after every fetch (onCurrent), a 304 included (review, 2026-12-07)
          // (the stat and the read of one open file: never the answer of one file under another's key)
          const fh = await open(path.join(dir, CRL_FILE), 'r').catch(() => undefined);
          if (fh === undefined) return crlFileCovers(undefined, caPem);
          try {
            const st = await fh.stat();
            // and its two ends, which every list's signature and issue time change: a filesystem
            // with whole-second times, or a kernel counting them in jiffies, can give a same-size
            // rewrite in place the same stat (review of 573a5f7)
            const ends = Buffer.alloc(Math.min(st.size, 8192));
            await fh.read(ends, 0, Math.min(st.size, 4096), 0);
            if (st.size > 4096) await fh.read(ends, 4096, ends.length - 4096, st.size - (ends.length - 4096));
            const file = `${st.dev}:${st.ino}:${st.size}:${st.mtimeMs}:${st.ctimeMs}:${createHash('sha256').update(ends).digest('hex')}`;
            if (coversKnown?.file === file && coversKnown.caPem === caPem) return coversKnown.covers;
            const text = await fh.readFile('utf8').catch(() => undefined);
            const covers = crlFileCovers(text, caPem);
            coversKnown = text === undefined ? undefined : { file, caPem, covers };
            return covers;
          } finally {
            await fh.close();
          }
        };
        // mosquitto.conf names passwd: written only once passwd is, never pointing at a missing file
        const writeCompanions = async () => {
          let crlCovers = false;
          if (clientCa !== undefined) {
            clientCa = await readClientCaBundle(caDir!); // the newest, now that the broker's files are written
            // crl.pem was fetched and checked against the CAs read at start, which may have
            // changed since (a rollover): crlfile is named only if crl.pem, as it is now, covers
            // the client-ca.crt written with it, and one is asked for first if it does not
            if (!(await fileCovers(clientCa.pem))) await coverNewCas(clientCa);
            crlCovers = await fileCovers(clientCa.pem);
            await writeFileAtomic(path.join(dir, CLIENT_CA_FILE), clientCa.pem, 0o644);
            clientCaWritten = true;
          }
          // the acl is the watch's: it denies revoked devices every topic, and changes with them
          // the crlfile named only if crl.pem covers every CA of client-ca.crt (none can be made: said by the watch)
          await writeFileAtomic(path.join(dir, 'mosquitto.conf'), confWith(crlCovers), 0o644);
          logger.info('wrote mosquitto.conf', { dir });
        };
        logger.info('keeping passwd and acl current (mosquitto.conf is written after them)', { dir, server: safeUrl(api.baseUrl), reloadCommand: opts.reloadCommand ?? 'none' });
        if (caDir !== undefined && opts.reloadCommand === undefined) logger.warn(`no --reload-command: Mosquitto rereads passwd, acl and ${CRL_FILE} only on a reload (kill -HUP), so the files kept here change nothing it does until it is reloaded or restarted; give --reload-command (e.g. "systemctl reload mosquitto")`);
        const unreadable = rootWithoutGroupWarning(path.join(dir, 'passwd'), group);
        if (unreadable) logger.warn(unreadable);
        const stop = () => ctl.abort();
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
        // a CA rollover, drop-previous or the previous CA's expiry changes client-ca.crt: reread
        // at each full read of the watch (each reconnection of its stream, as after the server's
        // restart on a new CA) and every --resync-minutes (a full read waits for a server that
        // cannot answer: a rollover is made with it stopped), rewritten when it changed. Always
        // in a pass of the watch's loop, never beside one (mosquitto-watch.ts `refresh`): this,
        // the CRL fetch, nameCrl and writeCompanions each read and write crl.pem, client-ca.crt
        // and mosquitto.conf, and run one at a time
        const refresh = async () => {
          if (!clientCaWritten) return false; // written with mosquitto.conf, once passwd is
          let wrote = false;
          // new CAs: before client-ca.crt names them, crl.pem covers them or mosquitto.conf stops naming it
          clientCa = await refreshClientCa(caDir!, dir, clientCa!, logger, async (next) => void (wrote = await coverNewCas(next)), ctl.signal);
          return wrote;
        };
        // against the newest client-ca.crt: a CRL missing one of its CAs is not written
        /**
         * Names crl.pem in mosquitto.conf, or stops naming it, once mosquitto.conf is written:
         * a crlfile without a CRL of a CA of the cafile makes Mosquitto, restarted, refuse every
         * certificate of that CA, so it is left out rather (deleted devices' certificates then
         * get in after a restart), and named again once crl.pem covers them.
         */
        const nameCrl = async (named: boolean, reason?: string) => {
          if (!clientCaWritten) return;
          // as mosquitto.conf is on disk (a one-off run may have rewritten it)
          const named0 = /^crlfile /m.test(await readFile(path.join(dir, 'mosquitto.conf'), 'utf8').catch(() => ''));
          if (named === named0) return;
          await writeFileAtomic(path.join(dir, 'mosquitto.conf'), confWith(named), 0o644);
          if (named) logger.warn(`mosquitto.conf names ${CRL_FILE} again: restart Mosquitto for deleted devices' certificates to be refused`);
          else logger.warn(`mosquitto.conf no longer names ${CRL_FILE}: it has no CRL of every CA of ${CLIENT_CA_FILE}, and Mosquitto restarted on it would refuse that CA's devices; until it is named again a restart admits deleted devices' certificates`, { reason });
        };
        /**
         * Before client-ca.crt takes `next`: crl.pem for its CAs, else no crlfile named. True when
         * crl.pem was written (a reload owed). Throws only when the watch is stopping, writing
         * nothing: a fetch cut by the stop says nothing of the CRL, and mosquitto.conf rewritten
         * without crlfile for it would admit deleted devices' certificates at the next restart.
         */
        const coverNewCas = async (next: ClientCaBundle): Promise<boolean> => {
          // what crl.pem holds already may cover them (an undone drop's CAs): then nothing is weakened
          const covered = await fileCovers(next.pem);
          try {
            const covering = coveringBundle(await crlFromServer(api, false), next.pem);
            if (!covering.ok) {
              if (!covered) await nameCrl(false, covering.reason);
              return false;
            }
            // as the watch's fetch does (crl-order.ts): a CA's newer list on disk is not replaced by an older one
            const onDisk = await readFile(path.join(dir, CRL_FILE), 'utf8').catch(() => undefined);
            await writeFileAtomic(path.join(dir, CRL_FILE), newerCrls(covering.pem, onDisk, { now: Date.now(), caPem: next.pem }).pem, 0o644);
            logger.info(`wrote ${CRL_FILE} for the CAs of the new ${CLIENT_CA_FILE}`, { revoked: covering.revoked, cas: covering.cas });
            // named in the same step (QA, 2026-12-06: written here, it stayed unnamed until the next full read)
            await nameCrl(true).catch(() => undefined);
            return true;
          } catch (err) {
            if (ctl.signal.aborted) throw err;
            if (!covered) await nameCrl(false, `the server could not be asked for the CRL: ${(err as Error).message}`).catch(() => undefined);
            return false;
          }
        };
        /** The server's last CRL, its digest sent with the next fetch (If-None-Match). */
        let heldCrl: CrlOutcome | undefined;
        // checked against the newest client-ca.crt; a CRL that covers it names crl.pem (again)
        const crl =
          clientCa !== undefined
            ? {
                file: path.join(dir, CRL_FILE),
                fetch: async (fresh: boolean) => {
                  // client-ca.crt as it is on disk once the watch has written it (what a restarted
                  // Mosquitto reads): a one-off run may have written other CAs since, and a CRL
                  // checked against the CAs remembered overwrote the one-off's covering crl.pem
                  // with one that did not cover (review of ba0ac78, 2026-12-07)
                  const remembered = (clientCa ?? (await readClientCaBundle(caDir!))).pem;
                  const bundle = { pem: clientCaWritten ? await readFile(path.join(dir, CLIENT_CA_FILE), 'utf8').catch(() => remembered) : remembered };
                  let fetched: CrlOutcome;
                  try {
                    // the digest held sent: the server answers 304 (no body) while it is the same;
                    // not for a list OpenSSL does not accept yet (issued more than a day ahead),
                    // which the server issues again by its clock put right, but kept answering
                    // 304 to (crl-order.ts notYetValid)
                    const held = fresh || (heldCrl?.ok && notYetValid(heldCrl.pem, Date.now())) ? undefined : heldCrl;
                    fetched = await crlFromServer(api, false, held);
                    if (fetched.ok) heldCrl = fetched;
                  } catch (err) {
                    // crl.pem stays as it was: still named while it covers every CA of client-ca.crt
                    // (stopping: as it is, the fetch cut by the stop says nothing of the CRL)
                    if (!ctl.signal.aborted && !(await fileCovers(bundle.pem))) await nameCrl(false, `the server could not be asked for the CRL: ${(err as Error).message}`);
                    throw err;
                  }
                  const covering = coveringBundle(fetched, bundle.pem);
                  // crl.pem still named while what it holds covers every CA of the client-ca.crt
                  // written: after drop-previous the server's CRL covers its one CA, client-ca.crt
                  // still both until it is reread, and the crlfile was left out, so a restart
                  // admitted deleted devices' certificates (QA, 2026-12-06)
                  if (!covering.ok && !(await fileCovers(bundle.pem))) await nameCrl(false, covering.reason);
                  return covering;
                },
                // crl.pem holds a CRL that covered the CAs of the fetch's start: named, whether or
                // not it changed, if crl.pem covers client-ca.crt as both are on disk now, and no
                // longer named if it does not (the CAs' reread runs in another pass, but a one-off
                // run may have written either: left named, a restart refused a CA's devices)
                onCurrent: async () => {
                  const caPem = await readFile(path.join(dir, CLIENT_CA_FILE), 'utf8').catch(() => clientCa!.pem);
                  if (await fileCovers(caPem)) await nameCrl(true);
                  else await nameCrl(false, `${CRL_FILE} has no CRL of every CA of ${CLIENT_CA_FILE} as it is on disk (a one-off mosquitto-config run wrote other CAs)`);
                },
                // a list crl.pem holds is kept over an older one fetched only if one of these signed it
                caPem: async () => (clientCaWritten ? await readFile(path.join(dir, CLIENT_CA_FILE), 'utf8').catch(() => clientCa!.pem) : clientCa!.pem),
              }
            : undefined;
        // a restarted watch: Mosquitto runs on the mosquitto.conf of its last run
        const companionsOnDisk = async () => (await stat(path.join(dir, 'mosquitto.conf')).catch(() => undefined)) !== undefined;
        await watchMosquittoPasswd({ api, passwdFile: path.join(dir, 'passwd'), aclFile: path.join(dir, 'acl'), secrets, ...(group ? { passwdGroup: group } : {}), writeCompanions, companionsOnDisk, ...(crl ? { crl } : {}), ...(caDir !== undefined ? { refresh } : {}), ...(opts.reloadCommand !== undefined ? { reloadCommand: opts.reloadCommand } : {}), resyncMs: resyncMinutes * 60_000, logger, signal: ctl.signal });
        logger.info('stopped');
        return;
      }
      const api = opts.offline ? undefined : new ApiClient(opts);
      // before the registry is read: a directory that cannot take the files is said in one line, exit 2
      const outDir = await makeOutputDir('--out', opts.out);
      let passwd: ReturnType<typeof mosquittoPasswd>;
      let from: string;
      let crl: CrlOutcome | undefined;
      let crlRemoved = false;
      try {
        const read: { token: string; devices: RegisteredDevice[]; from: string; revokedCertificates?: RevokedEntry[] } = api ? await online(api) : await offlineCredentials(opts, { revokedCertificates: clientCa !== undefined });
        from = read.from;
        passwd = mosquittoPasswd({ operatorToken: read.token, devices: read.devices, secrets });
        await outDir.write('passwd', passwd.text, 0o600);
        await shareWithGroup(path.join(dir, 'passwd'), group);
        if (clientCa !== undefined) {
          clientCa = await readClientCaBundle(caDir!);
          await outDir.write(CLIENT_CA_FILE, clientCa.pem, 0o644);
          crl = coveringBundle(api ? await crlFromServer(api) : await crlOffline(caDir!, read.revokedCertificates ?? []), clientCa.pem);
          if (crl.ok) await outDir.write(CRL_FILE, crl.pem, 0o644);
          else {
            // an earlier run's, which mosquitto.conf no longer names; a Mosquitto started on
            // that earlier configuration still does, and fails to reload its certificates without it
            crlRemoved = await stat(path.join(dir, CRL_FILE)).then(() => true, () => false);
            await rm(path.join(dir, CRL_FILE), { force: true });
          }
        }
        await outDir.write('acl', mosquittoAcl(passwd.revoked), 0o644);
        await outDir.write('mosquitto.conf', confWith(crl?.ok === true), 0o644);
      } catch (err) {
        await outDir.undo(); // files made by this run, and the directories; those of an earlier run stay
        throw err;
      }
      const out = process.stdout;
      out.write(`wrote ${dir}/mosquitto.conf, passwd, acl${clientCa ? `, ${CLIENT_CA_FILE}` : ''}${crl?.ok ? `, ${CRL_FILE}` : ''}: operator + ${passwd.included.length} devices (registry read from ${from})\n`);
      // as the watch says at its start: Mosquitto, dropped to its own user, cannot read a root-owned 0600 passwd
      const unreadable = rootWithoutGroupWarning(path.join(dir, 'passwd'), group);
      if (unreadable) process.stderr.write(`updraft: warning: ${unreadable}\n`);
      if (clientCa) out.write(`${clientCaSummary(clientCa)}\n`);
      if (crl) out.write(`${crlSummary(crl)}\n`);
      if (crlRemoved) out.write(`removed the earlier ${CRL_FILE}: restart Mosquitto on the new mosquitto.conf (which names no crlfile); a reload (kill -HUP) is not enough, one started on the earlier configuration still names ${CRL_FILE} and fails to reload its certificates without it\n`);
      if (passwd.revoked.length) out.write(`left out ${passwd.revoked.length} revoked devices (and denied every topic in acl: a client certificate login gets nothing either)\n`);
      if (passwd.unnamable.length) out.write(`left out ${passwd.unnamable.length} devices whose id holds ':' (${COLON_ID_REASON}) or is "operator" (reserved: the operators' user name): ${passwd.unnamable.slice(0, 20).join(', ')}${passwd.unnamable.length > 20 ? ', ...' : ''}\n`);
      if (passwd.missing.length) out.write(`no broker hash and no secret for ${passwd.missing.length} devices registered before hashes were kept (not admitted; add them to --secrets or rotate their secrets): ${passwd.missing.slice(0, 20).join(', ')}${passwd.missing.length > 20 ? ', ...' : ''}\n`);
      if (cafileIsUpdraftCa) out.write(`run: mosquitto -c ${dir}/mosquitto.conf   (restart it after regenerating, a reload (kill -HUP) is not enough: Mosquitto reads ${CLIENT_CA_FILE}, its cafile, at start only; or keep passwd current with --watch, which says when ${CLIENT_CA_FILE} changed)\n`);
      else out.write(`run: mosquitto -c ${dir}/mosquitto.conf   (reload after regenerating: kill -HUP <pid>; or keep it current with --watch)\n`);
    });
}

/** The token and the registry through a running instance's API (the default). */
async function online(api: ApiClient): Promise<{ token: string; devices: RegisteredDevice[]; from: string }> {
  return { token: api.token, devices: await brokerCredentials(api), from: safeUrl(api.baseUrl) };
}

/** `--offline` reads what the instances start with: a server or token given with it would be ignored, so they are refused. */
function checkOffline(opts: Options): void {
  if (!opts.offline) {
    if (opts.db !== undefined || opts.config !== undefined) throw new UpdraftError('BAD_REQUEST', '--db and --config go with --offline (without it the registry is read through --server)');
    return;
  }
  if (opts.watch) throw new UpdraftError('BAD_REQUEST', '--offline and --watch do not go together: --watch follows a running server');
  if (opts.server !== undefined || opts.token !== undefined) throw new UpdraftError('BAD_REQUEST', "--offline reads the operator token from --data-dir's operator-token, the one the instances start with, and the registry from the store: drop --server and --token");
}

/** The `--secrets` file, refused whole (naming the file and each bad line) rather than read in part. */
async function readSecrets(file: string): Promise<Map<string, string>> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new UpdraftError('BAD_REQUEST', `--secrets ${file}: cannot read it (${code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : (err as Error).message})`, { cause: err });
  }
  return parseSecrets(text, `--secrets ${file}`);
}

/** The data directory whose pki/ `--updraft-ca` reads: the server's own settings with --offline, else as the token file's. */
function updraftCaDataDir(opts: Options): string {
  if (opts.offline) return path.resolve(loadConfig({ ...(opts.config !== undefined ? { file: opts.config } : {}), env: process.env, flags: { 'data-dir': opts.dataDir, db: opts.db } }).dataDir);
  return path.resolve(opts.dataDir ?? (process.env.UPDRAFT_DATA_DIR || './data'));
}

/** One line on what client-ca.crt holds, and when it must be regenerated. */
function clientCaSummary(b: ClientCaBundle): string {
  const until = b.previousNotAfter === undefined ? '' : new Date(b.previousNotAfter).toISOString();
  if (b.previousTrusted) return `${CLIENT_CA_FILE}: Updraft's CA (pki/ca.crt) and the previous CA of a rollover (pki/previous-ca.crt, until ${until}); regenerate after updraft ca drop-previous`;
  if (b.previousNotAfter !== undefined) return `${CLIENT_CA_FILE}: Updraft's CA (pki/ca.crt); the previous CA (pki/previous-ca.crt) is left out: it expired at ${until}`;
  return `${CLIENT_CA_FILE}: Updraft's CA (pki/ca.crt); regenerate after updraft ca rollover`;
}

/**
 * `--watch`: rereads the client CAs; when they changed, rewrites client-ca.crt and says the
 * broker must be restarted: Mosquitto 2.0 reads a listener's cafile at start only (a SIGHUP,
 * the reload command, leaves the CAs it started with: checked with 2.0.11). Throws only when
 * `stopping` has aborted (the watch is ending), having written nothing.
 */
async function refreshClientCa(caDir: string, dir: string, last: ClientCaBundle, logger: Logger, beforeWrite?: (next: ClientCaBundle) => Promise<void>, stopping?: AbortSignal): Promise<ClientCaBundle> {
  try {
    const next = await readClientCaBundle(caDir);
    if (next.pem === last.pem) return last;
    await beforeWrite?.(next);
    await writeFileAtomic(path.join(dir, CLIENT_CA_FILE), next.pem, 0o644);
    // an expired previous CA left out changes nothing Mosquitto accepts (OpenSSL refuses its chains)
    const expiredOnly = last.previousTrusted && !next.previousTrusted && next.previousNotAfter === last.previousNotAfter && last.pem.startsWith(next.pem);
    if (expiredOnly) logger.info(`wrote ${CLIENT_CA_FILE}: the previous CA has expired and is left out (Mosquitto refuses its certificates already)`, { summary: clientCaSummary(next) });
    else logger.warn(`wrote ${CLIENT_CA_FILE}: the CAs of client certificates changed; restart Mosquitto to use it (it reads cafile at start only, a reload is not enough)`, { summary: clientCaSummary(next) });
    return next;
  } catch (err) {
    if (stopping?.aborted) throw err; // the watch is ending (its pass too): nothing written, nothing said
    logger.warn(`cannot reread the CAs for ${CLIENT_CA_FILE}; keeping the file as it is`, { error: (err as Error).message });
    return last;
  }
}

function listeners(opts: Options, dir: string): MosquittoListeners {
  return {
    dir,
    deviceHost: opts.deviceHost,
    devicePort: port(opts.devicePort, '--device-port'),
    serviceHost: opts.serviceHost,
    servicePort: port(opts.servicePort, '--service-port'),
    maxPacketBytes: packetBytes(opts.maxPacketBytes),
    ...(opts.tlsCert && opts.tlsKey ? { tls: { certfile: path.resolve(opts.tlsCert), keyfile: path.resolve(opts.tlsKey), ...(opts.tlsCa ? { cafile: path.resolve(opts.tlsCa) } : opts.updraftCa ? { cafile: path.join(dir, CLIENT_CA_FILE), certificateLogins: true } : {}) } } : {}),
  };
}

function packetBytes(value: string): number {
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < 4096) throw new UpdraftError('BAD_REQUEST', `--max-packet-bytes must be a whole number of bytes from 4096, got ${value}`);
  return n;
}

function port(value: string, flag: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > 65535) throw new UpdraftError('BAD_REQUEST', `${flag} must be a port from 1 to 65535, got ${value}`);
  return n;
}
