/**
 * The operator's own TLS files (`mqtt.tlsCert`/`mqtt.tlsKey`, `http.tlsCert`/`http.tlsKey`),
 * read again every `tls.reloadSeconds` while the server runs and swapped into the listener
 * that serves them (`tls.Server.setSecureContext`, as server-tls-renewal.ts does for the
 * certificates Updraft's CA issues): certbot or cert-manager renews them in place, and the
 * server kept serving the pair it read at start until it was restarted (QA).
 *
 * A new pair is taken only whole and usable: both files PEM, the key the certificate's, the
 * certificate valid now. Anything else (a key not yet written beside its new certificate, a
 * certificate already expired) is logged (WARN) once the same pair has been read at two
 * reads in a row, and once per pair, and the pair served stays: a tool that replaces the two
 * files one after the other (certbot switches its live/ links one by one) can be read between
 * them, and that pair, gone at the next read, is no fault. Connections already open keep the certificate they shook hands with.
 */
import { X509Certificate, createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import type { ServerTls } from '../pki/server-tls.ts';
import type { Logger } from '../util/logger.ts';
import type { TlsListener } from './server-tls-renewal.ts';
import { checkTlsFiles } from './tls-files-check.ts';

/** What the reload needs. */
export interface OperatorTlsReloadDeps {
  /** The listeners; those without files of the operator's are left to server-tls-renewal.ts. */
  listeners: TlsListener[];
  logger: Logger;
  /** Between two reads, ms; 0: never read again (`tls.reloadSeconds` 0). */
  intervalMs: number;
}

/** Why `tls` cannot be served at `nowMs`, or undefined when it can. */
function unusable(tls: ServerTls, l: TlsListener, nowMs: number): string | undefined {
  try {
    checkTlsFiles(tls, { prefix: l.what, certFile: l.certFile, keyFile: l.keyFile });
  } catch (err) {
    return (err as Error).message;
  }
  const x509 = new X509Certificate(tls.cert);
  const setting = `${l.what}.tlsCert (${l.certFile})`;
  if (Date.parse(x509.validTo) <= nowMs) return `${setting} has expired (${new Date(x509.validTo).toISOString()})`;
  if (Date.parse(x509.validFrom) > nowMs) return `${setting} is not valid before ${new Date(x509.validFrom).toISOString()}`;
  return undefined;
}

/** Reads the operator's TLS files on a timer and serves a new, usable pair. */
export class OperatorTlsReload {
  private readonly deps: OperatorTlsReloadDeps;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  /** Per listener, the last pair refused (its digest), and whether it was said (once, at its second read). */
  private readonly refused = new Map<TlsListener, { id: string; said: boolean }>();

  constructor(deps: OperatorTlsReloadDeps) {
    this.deps = deps;
  }

  private get own(): TlsListener[] {
    return this.deps.listeners.filter((l) => l.certFile && l.keyFile);
  }

  async start(): Promise<void> {
    if (this.deps.intervalMs <= 0 || this.own.length === 0) return;
    this.timer = setInterval(() => void this.check(), this.deps.intervalMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    await this.running;
  }

  /** One read of every listener's files (one at a time: a slow disk does not pile reads up). Never throws (logs). */
  check(): Promise<void> {
    this.running ??= this.look(false).finally(() => (this.running = undefined));
    return this.running;
  }

  /**
   * A read the operator asked for (SIGHUP, once the files are written): after a read under
   * way, one more, whose findings are all said at once: a pair refused at its first read (no
   * tool is between two files now), and files unchanged. Works with `tls.reloadSeconds` 0 too.
   * Never throws (logs).
   */
  async reloadNow(): Promise<void> {
    while (this.running) await this.running;
    if (this.own.length === 0) {
      this.deps.logger.info('no TLS files of the operator\'s to read again (mqtt.tlsCert/tlsKey and http.tlsCert/tlsKey are not set): nothing reloaded');
      return;
    }
    this.running = this.look(true).finally(() => (this.running = undefined));
    return this.running;
  }

  private async look(asked: boolean): Promise<void> {
    for (const l of this.own) {
      let next: ServerTls;
      try {
        const [cert, key] = await Promise.all([readFile(l.certFile, 'utf8'), readFile(l.keyFile, 'utf8')]);
        next = { cert, key };
      } catch (err) {
        this.refuse(l, `unreadable:${(err as Error).message}`, `cannot read them: ${(err as Error).message}`, asked);
        continue;
      }
      if (next.cert === l.tls.cert && next.key === l.tls.key) {
        this.refused.delete(l);
        if (asked) this.deps.logger.info(`the ${l.what} listener's TLS files are unchanged: it goes on serving their certificate${validUntil(l)}`, { cert: l.certFile });
        continue;
      }
      const why = unusable(next, l, Date.now());
      if (why !== undefined) {
        this.refuse(l, createHash('sha256').update(next.cert).update('\0').update(next.key).digest('hex'), why, asked);
        continue;
      }
      try {
        l.apply(next);
      } catch (err) {
        this.refuse(l, `apply:${(err as Error).message}`, (err as Error).message, asked);
        continue;
      }
      l.tls = next;
      this.refused.delete(l);
      this.deps.logger.info(`the ${l.what === 'mqtt' ? 'MQTTS' : 'HTTPS'} listener serves the new certificate of ${l.what}.tlsCert from its next connection on`, { file: l.certFile, notAfter: new Date(new X509Certificate(next.cert).validTo).toISOString() });
    }
  }

  /**
   * Logs a refused pair (`id` names it) at its second read in a row, once, or at once on a read
   * the operator asked for (`asked`); what is served stays.
   */
  private refuse(l: TlsListener, id: string, why: string, asked: boolean): void {
    const seen = this.refused.get(l);
    if (seen?.id !== id && !asked) {
      this.refused.set(l, { id, said: false });
      return;
    }
    if (seen?.id === id && seen.said && !asked) return;
    this.refused.set(l, { id, said: true });
    this.deps.logger.warn(`the ${l.what} listener's TLS files changed but are not taken: ${why}; it goes on serving the certificate it has${validUntil(l)}, and takes the files once they are a valid pair`, { cert: l.certFile, key: l.keyFile });
  }
}

/** ` (valid until <time>)` of the certificate `l` serves. */
function validUntil(l: TlsListener): string {
  try {
    return ` (valid until ${new Date(new X509Certificate(l.tls.cert).validTo).toISOString()})`;
  } catch {
    return ''; // what is served always parsed: it was checked at start or here
  }
}
