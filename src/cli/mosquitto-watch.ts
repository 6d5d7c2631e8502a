/**
 * `updraft broker mosquitto-config --watch`: keeps an external Mosquitto's password file in
 * step with the device registry, so that a device registered is admitted, and one revoked or
 * given a new secret is cut off, within seconds and without an operator regenerating the
 * file (docs/deployment.md). Run it beside Mosquitto, where it can write the file and reload
 * the broker.
 *
 * How it stays right:
 * - It listens to the server's event stream for `device.credentials` (relayed between
 *   instances, so a change made on any instance arrives) before it reads the whole registry,
 *   so no change falls between the two.
 * - After an event it waits a moment to gather a burst (a bulk registration), reads the
 *   credentials of the devices named (100 per request), writes the file only when its text
 *   changed (write-then-rename: Mosquitto never reads half a file) and runs the reload
 *   command (`kill -HUP`, `systemctl reload mosquitto`).
 * - Events are not durable: the relay drops them while its broker is unreachable, and a
 *   stream that breaks misses what happens until it is back. So every reconnection is
 *   followed by a full read of the registry, and so is every `resyncMs` anyway. A stream
 *   silent for longer than three heartbeats is taken for dead (a half-open connection) and
 *   opened again.
 * - A failed read leaves the file as it was (never a partial listing) and is tried again
 *   with backoff; a failed reload is tried again at the next pass. A CRL that cannot be
 *   fetched leaves crl.pem as it was and is tried again with its own backoff: the password
 *   file, mosquitto.conf and the reload go on without it.
 * - A request of a pass that gets no answer, or whose answer stops coming, is given up after
 *   `api`'s request timeout (`--request-timeout-seconds`, request-deadline.ts) and fails the
 *   pass like any other failed read: one pass runs at a time, and a request held for undici's
 *   300 s held every change, deletions included. The event stream is not given one: it is
 *   meant to stay open, and its silence check (STREAM_SILENCE_MS) is its own. `api` is given
 *   the caller's `signal` too: a stop (SIGTERM) ends the request in flight at once, and the
 *   pass with it, writing nothing after it (review of 090236f); a reload owed for files
 *   already written (passwd without a deleted device) still runs before the watch ends
 *   (review of ff871da).
 * - A refused token (401) ends the watch with an error: it will not come right by waiting.
 * - Mosquitto enforces the crl.pem of its last reload and nothing loaded before (2.0.11, QA of
 *   2026-12-07), so a CA's CRL is never written over a newer one of it on disk (crl-order.ts):
 *   a list fetched from an instance behind, or another writer's file, re-admitted deleted
 *   devices. And the CRL a deletion owes is fetched as the pass that handles it starts its
 *   reload, so that the deletion is one reload (each rereads crl.pem: seconds at 1,000,000
 *   entries), not two, when it comes within CRL_WITH_PASSWD_MS; a slower one does not hold
 *   up the reload that cuts the device's password login, and takes a reload of its own.
 * - The CRL's fetch and write run as a task of their own, beside the passes, one at a time:
 *   a pass does not wait for a list still downloading, so a second deletion is out of passwd
 *   (and reloaded) at once, not after the first deletion's download (a 60 MB list over a slow
 *   link takes minutes). Deletions during a download owe a fetch after it. What else reads or
 *   writes crl.pem, client-ca.crt and mosquitto.conf (`refresh`, `writeCompanions`) runs only
 *   while no CRL task does, and a reload clears what it owes only for the writes before it.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { runScript } from '../agent/health-check.ts';
import { COLON_ID_REASON, MosquittoPasswdBook, mosquittoAcl, mosquittoUserNameDefect } from '../broker/mosquitto-config.ts';
import { UpdraftError } from '../errors.ts';
import { writeFileAtomic } from '../util/atomic-file.ts';
import type { Logger } from '../util/logger.ts';
import { safeUrl } from '../util/redact-url.ts';
import type { ApiClient } from './api-client.ts';
import { writeBrokerSecretFile, type FileGroup } from './broker-file-group.ts';
import { brokerCredentials, credentialsOf } from './broker-credentials.ts';
import { newerCrls, notYetValid } from './crl-order.ts';
import type { CrlOutcome } from './mosquitto-crl.ts';

/** What the watch needs. */
export interface MosquittoWatchOptions {
  api: ApiClient;
  /** The password file to keep. */
  passwdFile: string;
  /**
   * The ACL file to keep beside it (`mosquittoAcl`: revoked devices denied every topic, which
   * a certificate login needs, the password file not being used there); written after the
   * password file, whenever the revoked devices change, with the same reload.
   */
  aclFile?: string;
  /** Secrets of devices registered without a kept broker hash. */
  secrets: Map<string, string>;
  /** The clock of its schedules (default Date.now; tests move it a day on). */
  now?: () => number;
  /** The group the password file is given to (0640), the one Mosquitto runs as (`--group`); none: 0600, this user's. */
  passwdGroup?: FileGroup;
  /**
   * Writes the files that name the password file (mosquitto.conf; the acl too when `aclFile`
   * is not given), once, right after the password file (and the acl) is first written: a broker started on a configuration whose password file
   * is missing does not start (a server that cannot be reached left exactly that). Whether it
   * names the crlfile is its own to decide, from the files it writes with it (the CAs may have
   * changed since the CRL was checked against them).
   */
  writeCompanions?: () => Promise<void>;
  /**
   * Whether the files `writeCompanions` writes are on disk already, from an earlier run of the
   * watch (Mosquitto runs on them): then the first pass reloads for passwd and acl without
   * waiting for the CRL's download, as every later pass does, and writes them once the CRL is
   * in. Without them, the first reload waits for it (asked once, at the first pass).
   */
  companionsOnDisk?: () => Promise<boolean>;
  /**
   * The crlfile to keep (`crl`, certificate logins: deleted devices' certificates,
   * pki/revocation-list.ts), from `fetch` (the server's `GET /api/v1/broker/crl`): read before
   * the companions are written (which name it only if it covers the CAs they write), again after each deletion and
   * each full read, written and reloaded when its revocations changed, and rewritten every
   * `CRL_REWRITE_MS` (Mosquitto 2.0 rereads the crlfile on SIGHUP). `onCurrent` after each
   * fetch whose CRL the file holds (written now, or the same revocations as before). A fetch
   * that throws leaves the file as it was, and is tried again with backoff; so is a write that
   * fails (a daily rewrite's is written by the try after it, its revocations the same). `fetch(fresh)`:
   * true for the daily rewrite, which asks for the list whatever is held (a 304 to the
   * digest held would give back the list held, issued by a clock since put right maybe).
   */
  crl?: {
    file: string;
    fetch: (fresh: boolean) => Promise<CrlOutcome>;
    onCurrent?: (crl: CrlOutcome) => Promise<void>;
    /** The CA certificates (PEM: client-ca.crt, what Mosquitto checks logins with) a list crl.pem holds must be signed by to be kept over an older one fetched (crl-order.ts). */
    caPem: () => Promise<string>;
  };
  /**
   * Rereads what else the broker's files are made from (`--updraft-ca`: the client CAs, and
   * the CRLs of new ones) and rewrites what changed, at each full read: every (re)connection
   * of the stream, so a server restarted after a CA rollover is followed at once (QA: the CAs
   * were reread every `resyncMs` only, and new-CA devices refused for up to 10 minutes), and
   * every `resyncMs` by a timer of the watch's, which only marks it owed and wakes the loop:
   * it runs in a pass, never beside one (review of 54bf24f: run by the timer beside a pass's
   * CRL fetch, a CRL checked against the CAs before the rollover named crl.pem in
   * mosquitto.conf after the rollover had left it out). Before the registry is read, so a
   * server that cannot be reached does not hold it up. True when it wrote a file Mosquitto
   * rereads on a reload (crl.pem): a reload is owed.
   */
  refresh?: () => Promise<boolean>;
  /** Run with `/bin/sh -c` after each change of the file; none: the file is only written. */
  reloadCommand?: string;
  /** A full read of the registry at least this often, in ms (default 10 minutes). */
  resyncMs?: number;
  /** How long to gather changes after an event before writing, in ms (default 1 s). */
  settleMs?: number;
  logger: Logger;
  /** Ends the watch. */
  signal: AbortSignal;
}

/** The server sends a comment every 15 s (http/event-stream.ts): three missed means the stream is gone. */
const STREAM_SILENCE_MS = 45_000;
const MAX_BACKOFF_MS = 30_000;
/** Said of devices left out for their id (`mosquittoUserNameDefect`). */
const UNNAMABLE = `devices whose id holds ':', or is "operator" (reserved), are not admitted: ${COLON_ID_REASON}`;
const RELOAD_TIMEOUT_MS = 30_000;
/**
 * The crlfile is rewritten (and the broker reloaded) at least daily. Not needed for its
 * validity (a CRL lives as long as its CA, revocation-list.ts), but harmless, and it leaves
 * out the expired certificates of deleted devices.
 */
const CRL_REWRITE_MS = 86_400_000;
/**
 * Two CRLs fetched at least this far apart: a burst of deletions events asks for one list a
 * second at most (the server issues each changed list at least a second after the last,
 * revocation-list.ts). Until the QA of 2026-12-07 this said OpenSSL keeps every CRL Mosquitto
 * loaded and takes the latest: Mosquitto 2.0.11 enforces only what crl.pem holds at a reload
 * (crl-order.ts).
 */
const CRL_SPACING_MS = 1_100;
/**
 * How long from a pass's start the reload for its passwd and acl waits for the CRL the pass
 * fetches, to take both in one reload (a deletion reloads once); a CRL later than that takes a
 * reload of its own, after the one that cuts the deleted device's password login.
 */
const CRL_WITH_PASSWD_MS = 2_000;

/** Runs until `signal` aborts (resolves) or the token is refused (rejects). */
export async function watchMosquittoPasswd(o: MosquittoWatchOptions): Promise<void> {
  const now = o.now ?? Date.now;
  const resyncMs = o.resyncMs ?? 10 * 60_000;
  const settleMs = o.settleMs ?? 1_000;
  const book = new MosquittoPasswdBook(o.api.token, o.secrets);
  const pending = new Set<string>();
  let needFull = true;
  let lastFull = 0;
  let written: string | undefined;
  let aclWritten: string | undefined;
  // a reload owed for files written since the last reload; `writes` counts the writes, so a
  // reload that a CRL written beside it (the CRL task) may have missed leaves one owed
  let reloadOwed = false;
  let writes = 0;
  let companionsOwed = o.writeCompanions !== undefined;
  // `companionsOnDisk`, asked once (at the first reload owed before the companions are written)
  let companionsOnDisk: boolean | undefined;
  // `refresh` owed by the timer (a full read does it anyway)
  let refreshOwed = false;
  // the crlfile: owed at start, after a deletion and after a full read
  let crlOwed = o.crl !== undefined;
  let crlDigest: string | undefined;
  // the list of the last fetch handled: the same revocations (digest) may come signed again, as
  // when the list held was issued by a clock ahead and one by the clock set right replaces it
  let crlFetched: string | undefined;
  let crlPem: string | undefined; // the text last written to crl.pem
  let crlWrittenAt = 0;
  // the last answer (ok or not) of a daily (fresh) fetch: the daily check counts from it, so a
  // server that cannot make a CRL is asked again a day later, not every CRL_SPACING_MS (review of
  // bd0da82). Of the daily fetch only: set by every answer, the fetch of each full read (every
  // resyncMs) put the daily one off for ever (review of 4cede31)
  let crlAnsweredAt = 0;
  // a daily (fresh) list answered and not yet kept (its write, or a step before it, failed): owed
  // again on the failure's backoff until kept. The tries again are plain fetches (a 304 gives
  // back the list the daily one brought: not the whole list every 30 s while a disk is full),
  // written though their revocations (digest) are the ones held: until 2026-12 such a fetch found
  // nothing changed and wrote nothing, and the next daily rewrite came a day after the answer
  let crlFreshOwed = false;
  let crlFetchedAt = 0;
  let crlSaid: string | undefined;
  // the digest of the last fetched CRL said to be older than crl.pem (one WARN per list)
  let crlOlderSaid: string | undefined;
  // a CRL fetch that threw: tried again from crlRetryAt, with its own backoff
  let crlRetryAt = 0;
  let crlBackoff = 1_000;
  // the CRL's fetch and write running beside the passes (never rejects; pokes the loop when done)
  let crlTask: Promise<void> | undefined;
  // a CRL task has ended (the first mosquitto.conf waits for one, not for every one after it)
  let crlTried = false;
  // a write of the CRL task (crl.pem, onCurrent) that passed its stop check: the stop path of a
  // refused token, which does not wait for the task, waits for it (local, short)
  let crlWriting: Promise<unknown> | undefined;
  let fatal: Error | undefined;
  // ends the stream and every wait: aborted by the caller, or a refused token
  const stop = new AbortController();
  const abortStop = () => stop.abort();
  o.signal.addEventListener('abort', abortStop, { once: true });
  if (o.signal.aborted) stop.abort();
  const fail = (err: Error) => {
    fatal = err;
    stop.abort();
  };
  let wake: (() => void) | undefined;
  const poke = () => {
    const w = wake;
    wake = undefined;
    w?.();
  };
  /** Waits `ms`, or less when stopped or, if `pokeable`, when an event or the stream's opening pokes. */
  const nap = (ms: number, pokeable: boolean) =>
    new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        stop.signal.removeEventListener('abort', done);
        if (wake === done) wake = undefined;
        resolve();
      };
      const timer = setTimeout(done, Math.max(0, ms));
      stop.signal.addEventListener('abort', done, { once: true });
      if (pokeable) wake = done;
    });
  const refused = () => new UpdraftError('UNAUTHORIZED', 'the server refused the operator token; give the current one (--token or UPDRAFT_TOKEN)');
  /** A file Mosquitto rereads on a reload was written: a reload owed. */
  const owe = () => {
    if (o.reloadCommand === undefined) return;
    reloadOwed = true;
    writes++;
  };
  /** Reloads the broker; what is owed is cleared only if nothing was written while it ran. */
  const reloadNow = async () => {
    const before = writes;
    await reload(o);
    if (writes === before) reloadOwed = false;
  };

  // the stream: changes as they happen; each (re)connection asks for a full read after it,
  // since what happened while it was down was not heard
  let opened: () => void = () => undefined;
  const firstOpen = new Promise<void>((resolve) => (opened = resolve));
  const streaming = (async () => {
    let backoff = 1_000;
    while (!stop.signal.aborted) {
      try {
        await followStream(
          o.api,
          stop.signal,
          () => {
            backoff = 1_000;
            needFull = true;
            opened();
            poke();
          },
          (deviceId) => {
            pending.add(deviceId);
            poke();
          },
        );
        if (!stop.signal.aborted) o.logger.warn('event stream ended; reconnecting');
      } catch (err) {
        if (stop.signal.aborted) break;
        if ((err as UpdraftError).status === 401) {
          fail(refused());
          break;
        }
        // the server followed and fetch's cause: "fetch failed" and "terminated" alone said
        // neither which server nor why (QA of docs/deployment.md, 2026-12-07)
        o.logger.warn('event stream unavailable; retrying (the registry is still read in full every resync)', { server: safeUrl(o.api.baseUrl), error: withCause(err), retryInMs: backoff });
      }
      await nap(backoff, false);
      backoff = Math.min(backoff * 2, MAX_BACKOFF_MS);
    }
  })();

  /** The CRL's fetch, CRL_SPACING_MS after the last. */
  const fetchCrl = async (fresh: boolean): Promise<CrlOutcome> => {
    const wait = crlFetchedAt + CRL_SPACING_MS - now();
    if (wait > 0) await nap(wait, false);
    crlFetchedAt = now();
    return o.crl!.fetch(fresh);
  };
  /** Whether `p` settles within `ms`. */
  const settlesWithin = async (p: Promise<unknown>, ms: number): Promise<boolean> => {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), Math.max(0, ms))));
    const settled = await Promise.race([p.then(() => true, () => true), late]);
    clearTimeout(timer);
    return settled;
  };

  /**
   * Fetches the CRL and writes it when its revocations changed or `fresh` asks (true: written,
   * a reload owed). A CRL that cannot be made leaves the file as it was, said once per reason.
   * A fetch that throws (a 500, the network) leaves it as it was too, said, and is tried again
   * from `crlRetryAt`. Only a refused token (401) is thrown, any failure once the watch is
   * stopping (nothing is written after the stop), and a write that fails.
   */
  const keepCrl = async (fresh: boolean): Promise<boolean> => {
    // the daily rewrite: this fetch's, or one answered before whose write failed
    const daily = fresh || crlFreshOwed;
    // nothing is written once the watch is stopping: checked after each step that waits (the
    // fetch, reading the files, the order check over two large lists), before each write (review
    // of 4cede31: a stop during the order check still wrote crl.pem and reloaded)
    const running = () => {
      if (stop.signal.aborted) throw new Error('stopping');
    };
    /** Runs `step`, a write, if the watch is not stopping; the stop path waits for it (`crlWriting`). */
    const writing = async (step: () => Promise<unknown>): Promise<void> => {
      running();
      const p = step();
      crlWriting = p;
      try {
        await p;
      } finally {
        if (crlWriting === p) crlWriting = undefined;
      }
    };
    let crl: CrlOutcome;
    try {
      crl = await fetchCrl(fresh);
      running();
    } catch (err) {
      // stopping: the fetch was cut by the stop, not failed; the pass ends here (nothing written, no reload)
      if ((err as UpdraftError).status === 401 || stop.signal.aborted) throw err;
      o.logger.warn(`could not fetch the CRL; ${path.basename(o.crl!.file)} stays as it was, retrying`, { error: (err as Error).message, retryInMs: crlBackoff });
      crlRetryAt = now() + crlBackoff;
      crlBackoff = Math.min(crlBackoff * 2, MAX_BACKOFF_MS);
      return false;
    }
    crlRetryAt = 0;
    if (fresh) crlAnsweredAt = now();
    // owed until kept below; a server that cannot make a CRL is asked again a day later (above)
    crlFreshOwed = daily && crl.ok;
    if (!crl.ok) {
      if (crlSaid !== crl.reason) o.logger.warn(`no ${path.basename(o.crl!.file)} can be made; the file stays as it was${crlWrittenAt > 0 ? '' : ' (none: mosquitto.conf names no crlfile, a deleted device\'s certificate gets into Mosquitto)'}`, { reason: crl.reason });
      crlSaid = crl.reason;
      return false;
    }
    crlSaid = undefined;
    // the file as it is on disk, not only the digest remembered: a one-off mosquitto-config run
    // between two passes rewrites or removes it (review, 2026-12-07)
    const onDisk = await readFile(o.crl!.file, 'utf8').catch(() => undefined);
    // the same revocations signed again (another instance, a restart) are the same list, but for
    // one OpenSSL takes now in place of one on disk it does not take yet (issued more than a day
    // ahead, the clock set right since): counting every new signature as a change rewrote
    // crl.pem and reloaded Mosquitto at every fetch while instances alternated (review of 0675827)
    const resigned = crl.pem !== crlFetched && onDisk !== undefined && notYetValid(onDisk, now()) && !notYetValid(crl.pem, now());
    // the daily rewrite counts from the first list held, written or found on disk as it is (a
    // restarted watch whose crl.pem was current never set it, and never rewrote: review of 6ea8f0b)
    if (onDisk !== undefined) crlWrittenAt ||= now();
    if (crl.digest === crlDigest && !resigned && onDisk === crlPem && !daily) {
      await writing(async () => o.crl!.onCurrent?.(crl));
      return false;
    }
    // never a CA's list over a newer one of it (crl-order.ts): Mosquitto enforces what the file
    // holds at the reload, and an older list re-admits the devices deleted since (QA of
    // 2026-12-07: an instance whose lists are behind, or another watch writing this directory)
    const choice = onDisk === undefined ? { pem: crl.pem, kept: [] } : newerCrls(crl.pem, onDisk, { now: now(), caPem: await o.crl!.caPem() });
    if (choice.kept.length > 0 && crlOlderSaid !== crl.digest) {
      o.logger.warn(`the CRL fetched is older than the one ${path.basename(o.crl!.file)} holds (an instance whose lists are behind, or another writer of this file: run one watch per directory); the newer kept`, { kept: JSON.stringify(choice.kept) });
      crlOlderSaid = crl.digest;
    }
    if (choice.pem === onDisk) {
      crlDigest = crl.digest;
      crlFetched = crl.pem;
      crlPem = onDisk;
      crlFreshOwed = false;
      await writing(async () => o.crl!.onCurrent?.(crl));
      return false;
    }
    const changed = crl.digest !== crlDigest || resigned || onDisk !== crlPem;
    await writing(async () => {
      await writeFileAtomic(o.crl!.file, choice.pem, 0o644);
      crlPem = choice.pem;
      // owed at once, in the write the stop path waits for: what follows (naming it in
      // mosquitto.conf) may fail, and the fetch tried again sees the same digest and writes
      // nothing, so Mosquitto kept the old CRL (review of bd0da82); and a refused token met
      // during the write reloads for it before the watch ends
      owe();
    });
    crlDigest = crl.digest;
    crlFetched = crl.pem;
    crlWrittenAt = now();
    crlFreshOwed = false;
    o.logger.info(changed ? 'crlfile written' : 'crlfile rewritten (daily)', { file: o.crl!.file, revoked: crl.revoked, cas: crl.cas, nextUpdate: new Date(crl.nextUpdate).toISOString() });
    await writing(async () => o.crl!.onCurrent?.(crl));
    return true;
  };

  /**
   * Starts the CRL's fetch and write as a task beside the passes (none must be running). Its
   * failures are its own: a fetch that fails is owed again from `crlRetryAt` (keepCrl), and so
   * is a write that fails, with the same backoff (a daily rewrite's: `crlFreshOwed`); a refused
   * token ends the watch. When it ends it wakes the loop: a reload may be owed, and a fetch owed by deletions made meanwhile.
   */
  const startCrl = (fresh: boolean): Promise<void> => {
    crlOwed = false; // deletions from now on owe a fetch after this one
    const task = (async () => {
      try {
        await keepCrl(fresh);
        if (crlRetryAt > 0) crlOwed = true;
        // the backoff starts again once a try is through, not at its fetch's answer: a write
        // failing after each answer was tried every second for as long as it failed
        else crlBackoff = 1_000;
      } catch (err) {
        if (stop.signal.aborted) return;
        if ((err as UpdraftError).status === 401) return fail(refused());
        o.logger.warn(`could not keep ${path.basename(o.crl!.file)}; retrying`, { error: (err as Error).message, retryInMs: crlBackoff });
        crlRetryAt = now() + crlBackoff;
        crlBackoff = Math.min(crlBackoff * 2, MAX_BACKOFF_MS);
        crlOwed = true;
      } finally {
        crlTask = undefined;
        crlTried = true;
        poke();
      }
    })();
    crlTask = task;
    return task;
  };

  /** Writes the companions once passwd is and a CRL task has ended (none runs now): they name crl.pem only if it covers the CAs. */
  const companionsIfReady = async () => {
    if (!companionsOwed || written === undefined || crlTask !== undefined || (o.crl !== undefined && !crlTried)) return;
    await o.writeCompanions!();
    companionsOwed = false;
  };
  /** A reload owed and allowed: before the companions are written, only if they are on disk from an earlier run (`onDisk`). */
  const reloadDue = (onDisk: boolean) => reloadOwed && (!companionsOwed || onDisk);

  // the CAs reread every resyncMs even while full reads fail (a rollover is made with the
  // server stopped): the timer marks it owed and wakes the loop, one pass at a time
  const refreshTimer = o.refresh === undefined ? undefined : setInterval(() => {
    refreshOwed = true;
    poke();
  }, resyncMs);
  stop.signal.addEventListener('abort', () => clearInterval(refreshTimer), { once: true });

  // the first full read after the stream is open, so that no change falls between them
  // (if the stream cannot open, the registry is read anyway, and again when it does)
  await Promise.race([firstOpen, nap(5_000, false)]);
  let backoff = 1_000;
  let readingFull = false;
  while (!stop.signal.aborted) {
    const full = needFull || now() >= lastFull + resyncMs;
    // the daily fetch (fresh) is due a day after the last daily answer or write
    const crlDaily = o.crl !== undefined && crlWrittenAt > 0 && now() >= Math.max(crlWrittenAt, crlAnsweredAt) + CRL_REWRITE_MS;
    const crlDue = crlDaily || crlFreshOwed;
    // a CRL owed waits for its retry time after a failed fetch, and for the CRL task running
    const crlNow = crlTask === undefined && (crlOwed || crlDue) && now() >= crlRetryAt;
    // the CAs' reread waits for the CRL task too (both read and write crl.pem and mosquitto.conf)
    const refreshNow = refreshOwed && crlTask === undefined;
    // the companions wait for the CRL task (they name crl.pem only if it covers the CAs), and a
    // reload owed before them waits too, unless they are on disk from an earlier run
    const companionsNow = companionsOwed && crlTask === undefined;
    if (!full && !refreshNow && pending.size === 0 && !reloadDue(companionsOnDisk !== false) && !companionsNow && !crlNow) {
      // the CRL task running wakes the loop when it ends
      const crlNext = o.crl === undefined || crlTask !== undefined ? Infinity : crlOwed || crlFreshOwed ? crlRetryAt : crlWrittenAt > 0 ? Math.max(Math.max(crlWrittenAt, crlAnsweredAt) + CRL_REWRITE_MS, crlRetryAt) : Infinity;
      await nap(Math.min(lastFull + resyncMs, crlNext) - now(), true);
      // gather the rest of a burst (a bulk registration) into one write and one reload
      if (pending.size > 0 && !needFull) await nap(settleMs, false);
      continue;
    }
    const passStart = now();
    try {
      if (refreshNow || full) {
        // a CRL task running: the reread is owed, and runs once it ends (it wakes the loop)
        if (crlTask !== undefined) refreshOwed = o.refresh !== undefined;
        else {
          refreshOwed = false;
          if (o.refresh !== undefined && (await o.refresh())) owe();
        }
      }
      if (full) {
        needFull = false;
        readingFull = true;
        pending.clear(); // the listing sees them; changes after its start arrive as new events
        const devices = await brokerCredentials(o.api);
        book.replaceAll(devices);
        readingFull = false;
        lastFull = now();
        crlOwed = o.crl !== undefined;
        o.logger.info('read the registry', { devices: devices.length, admitted: book.admitted });
        if (book.missing.length) o.logger.warn('devices with no kept broker hash and no --secrets line are not admitted: rotate their secrets or list them in --secrets', { count: book.missing.length, first: book.missing.slice(0, 20).join(',') });
        if (book.unnamable.length) o.logger.warn(UNNAMABLE, { count: book.unnamable.length, first: book.unnamable.slice(0, 20).join(',') });
      } else if (pending.size > 0) {
        const ids = [...pending];
        pending.clear();
        try {
          const found = new Map((await credentialsOf(o.api, ids)).map((d) => [d.deviceId, d]));
          for (const id of ids) {
            const d = found.get(id);
            if (d) {
              book.set(d);
              if (mosquittoUserNameDefect(id) !== undefined && !d.revoked) o.logger.warn(UNNAMABLE, { count: 1, first: id });
            } else {
              book.remove(id); // not registered any more
              crlOwed = o.crl !== undefined; // deleted: its certificates are revoked
            }
          }
        } catch (err) {
          for (const id of ids) pending.add(id);
          throw err;
        }
      }
      const text = book.text();
      if (text !== written) {
        // Mosquitto reloading never reads half a file; 0600 (0640 with --group): password hashes
        await writeBrokerSecretFile(o.passwdFile, text, o.passwdGroup);
        written = text;
        owe();
        o.logger.info('password file written', { file: o.passwdFile, admitted: book.admitted });
      }
      if (o.aclFile !== undefined) {
        const revoked = book.revoked;
        const acl = mosquittoAcl(revoked);
        if (acl !== aclWritten) {
          await writeFileAtomic(o.aclFile, acl, 0o644);
          aclWritten = acl;
          owe();
          o.logger.info('acl written', { file: o.aclFile, revoked: revoked.length });
        }
      }
      // a CRL owed by this pass's own deletion is fetched now, and the reload waits for it up to
      // CRL_WITH_PASSWD_MS from the pass's start (QA of 2026-12-07: it waited for the next pass,
      // and each deletion reloaded Mosquitto twice, each reload rereading crl.pem): a 304 or a
      // list of a few MB joins this pass's reload. A later one does not hold it: a deleted
      // device's password login is cut by the reload alone, and a 60 MB list over a slow link
      // held it for minutes (review of 2efa5c0; the request timeout is an idle limit); the task
      // writes it when it comes and wakes the loop for a reload of its own. A CRL task already
      // running (an earlier deletion's list still coming) is not waited for: its fetch started
      // before this deletion, which owes one after it.
      // the first mosquitto.conf once a CRL task has ended, before the next starts: on a first run
      // whose CRLs each took over the 2 s bound, with a deletion during each, every pass started
      // the next one first, and neither mosquitto.conf nor any reload came (review of 6ea8f0b)
      await companionsIfReady();
      if (o.crl !== undefined && crlTask === undefined && (crlOwed || crlDue) && now() >= crlRetryAt) {
        const task = startCrl(crlDaily);
        if (reloadOwed || companionsOwed) await settlesWithin(task, passStart + CRL_WITH_PASSWD_MS - now());
        if (stop.signal.aborted) break;
      }
      // the first writing of mosquitto.conf names crl.pem only once it is known: once no CRL task
      // runs (one that ends wakes the loop). Until the review of 4cede31 the first pass waited for
      // the whole download, and with it the reload for the deletions made while the watch was down
      await companionsIfReady();
      // before the companions are written, a reload only if they are on disk from an earlier run
      // (Mosquitto runs on them); a first run's waits for them, and for the CRL they name
      if (reloadOwed && companionsOwed && companionsOnDisk === undefined) companionsOnDisk = (await o.companionsOnDisk?.()) ?? false;
      if (reloadDue(companionsOnDisk === true)) await reloadNow();
      backoff = 1_000;
    } catch (err) {
      if (readingFull) needFull = true;
      readingFull = false;
      if ((err as UpdraftError).status === 401) {
        fail(refused());
        break;
      }
      if (stop.signal.aborted) break;
      // never longer than resyncMs: a full read tried again also rereads the CAs (refresh), which
      // a server that cannot be reached for a while must not hold up past the resync period
      const retryInMs = Math.min(backoff, resyncMs);
      o.logger.warn('could not bring the password file up to date; it stays as it was, retrying', { error: (err as Error).message, retryInMs });
      await nap(retryInMs, false);
      backoff = Math.min(backoff * 2, MAX_BACKOFF_MS);
    }
  }
  stop.abort();
  o.signal.removeEventListener('abort', abortStop);
  // the CRL task ends at the stop (its request is cut by the caller's signal; nothing is written
  // after the stop). Not waited for when the watch ends of itself (a refused token): the request
  // is the caller's to cut, and a list still downloading held the exit until it ended (review of
  // 4cede31); the error goes up now, and the task writes nothing more. A write of it already
  // past its stop check is waited for (local and short): it ended after the watch had (the
  // process exits on the error, leaving its temporary file, or crl.pem new and never reloaded)
  if (fatal === undefined) await crlTask;
  else if (crlWriting !== undefined) {
    o.logger.info('stopping: waiting for the CRL write in progress');
    await crlWriting.catch(() => undefined);
  }
  // a stop in a pass that wrote passwd, acl or crl.pem but had not reloaded yet (in the wait
  // for a deletion's CRL, or its download): the reload owed runs now, bounded by its own
  // timeout, or Mosquitto keeps admitting a deleted device's password (review of ff871da:
  // the watch exited 0 without it). The CRL cut by the stop is not written.
  if (reloadOwed) {
    o.logger.info('stopping with a reload owed for the files written: reloading the broker before exit');
    try {
      await reload(o);
    } catch (err) {
      o.logger.warn('the reload owed at the stop failed; Mosquitto keeps the files of its last reload until it is reloaded or restarted', { error: (err as Error).message });
    }
  }
  await streaming;
  if (fatal) throw fatal;
}

async function reload(o: MosquittoWatchOptions): Promise<void> {
  const end = await runScript({ command: o.reloadCommand!, env: {}, cwd: path.dirname(o.passwdFile), timeoutMs: RELOAD_TIMEOUT_MS }, 'reload command');
  if (end.failure) throw new Error(end.failure);
  if (end.code !== 0) throw new Error(`reload command failed: ${end.code === null ? `killed by ${end.signal}` : `exit code ${end.code}`}${end.lastLine ? `: ${end.lastLine}` : ''}`);
  o.logger.info('broker reloaded');
}

/**
 * Follows `GET /api/v1/events?types=device.credentials` until it ends, breaks or falls
 * silent; `onOpen` once the server has subscribed it (its answer's head is written after).
 */
async function followStream(api: ApiClient, signal: AbortSignal, onOpen: () => void, onChange: (deviceId: string) => void): Promise<void> {
  const ctl = new AbortController();
  const abort = () => ctl.abort();
  signal.addEventListener('abort', abort, { once: true });
  let silence: NodeJS.Timeout | undefined;
  const alive = () => {
    clearTimeout(silence);
    silence = setTimeout(abort, STREAM_SILENCE_MS);
  };
  try {
    alive();
    const res = await fetch(`${api.baseUrl}/api/v1/events?types=device.credentials`, { headers: { authorization: `Bearer ${api.token}` }, signal: ctl.signal });
    if (!res.ok || !res.body) {
      await res.body?.cancel();
      throw new UpdraftError('INTERNAL', `the event stream answered HTTP ${res.status}`, { status: res.status });
    }
    onOpen();
    const decoder = new TextDecoder();
    let buffer = '';
    for await (const chunk of res.body as AsyncIterable<Uint8Array>) {
      alive();
      buffer += decoder.decode(chunk, { stream: true });
      let end: number;
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        const message = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const data = parseEvent(message, 'device.credentials');
        if (data && typeof (data as { deviceId?: unknown }).deviceId === 'string') onChange((data as { deviceId: string }).deviceId);
      }
    }
  } catch (err) {
    if (ctl.signal.aborted && !signal.aborted) throw new Error('the event stream fell silent');
    throw err;
  } finally {
    clearTimeout(silence);
    signal.removeEventListener('abort', abort);
  }
}

/** An error's message with its cause's (fetch's: `fetch failed (connect ECONNREFUSED 10.0.0.7:8080)`, `terminated (other side closed)`). */
function withCause(err: unknown): string {
  const message = (err as Error | undefined)?.message ?? String(err);
  const cause = (err as { cause?: { code?: unknown; message?: unknown } } | undefined)?.cause;
  const why = typeof cause?.message === 'string' && cause.message !== '' ? cause.message : typeof cause?.code === 'string' ? cause.code : undefined;
  return why !== undefined ? `${message} (${why})` : message;
}

/** The data of one server-sent event of `type`, or undefined (a comment, another type, unreadable data). */
function parseEvent(message: string, type: string): unknown {
  let event = 'message';
  const data: string[] = [];
  for (const line of message.split('\n')) {
    if (line.startsWith('event:')) event = line.slice(6).trim();
    else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
  }
  if (event !== type || data.length === 0) return undefined;
  try {
    return JSON.parse(data.join('\n'));
  } catch {
    return undefined;
  }
}
