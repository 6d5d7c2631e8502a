/**
 * The running server's TLS certificates, looked at daily (and at start): the server
 * certificate issued by Updraft's CA is reissued when it nears its end (pki/server-tls.ts,
 * `needsRenewal`) and swapped into the listeners that serve it with
 * `tls.Server.setSecureContext` (connections already open keep the one they shook hands
 * with); the CA's own expiry is warned about from a year before it. A production server
 * runs for months: its certificate was checked at start only, and expired under it, each
 * MQTTS device then refused with "certificate has expired" and nothing in the log (QA).
 *
 * Each instance renews its own `pki/server.*` (docs/deployment.md: they are each instance's
 * own; the CA, shared, is never written here), so instances on one database do not contend.
 */
import type { CertificateAuthority } from '../pki/certificate-authority.ts';
import { certificateNotAfter, needsRenewal, resolveServerTls, type ServerTls } from '../pki/server-tls.ts';
import type { Logger } from '../util/logger.ts';
import { whileSettingUp } from './data-dir-lock.ts';

const DAY_MS = 86_400_000;
/** The CA's expiry is warned about from this long before it. */
export const CA_WARNING_MS = 365 * DAY_MS;

/** A listener serving a server certificate. */
export interface TlsListener {
  /** `mqtt` or `http`: the settings are `<what>.tlsCert`, `<what>.tlsKey`. */
  what: 'mqtt' | 'http';
  /** What it serves now. */
  tls: ServerTls;
  /** The operator's own files (`<what>.tlsCert`, `<what>.tlsKey`): not Updraft's to renew. */
  certFile: string;
  keyFile: string;
  /** Serves `tls` from the next handshake on. */
  apply(tls: ServerTls): void;
}

/** What the renewal needs. */
export interface ServerTlsRenewalDeps {
  dataDir: string;
  ca: CertificateAuthority;
  hosts: string[];
  listeners: TlsListener[];
  logger: Logger;
  /** Between two looks, ms (default a day). */
  intervalMs?: number;
}

/** Expiries (seconds since the epoch) of what is served, for the metrics; null where nothing is. */
export interface TlsExpiries {
  caExpiresAt: number;
  /** When the previous CA of a rollover (pki/previous-ca.crt) expires; null without one. */
  previousCaExpiresAt: number | null;
  /** Devices this instance gave a current-CA certificate for a previous-CA one (renewed over MQTT), since it started. */
  devicesMovedOffPreviousCa: number;
  mqttCertificateExpiresAt: number | null;
  httpCertificateExpiresAt: number | null;
}

/** Keeps the served server certificates and warns of the CA's end. */
export class ServerTlsRenewal {
  private readonly deps: ServerTlsRenewalDeps;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;

  constructor(deps: ServerTlsRenewalDeps) {
    this.deps = deps;
  }

  async start(): Promise<void> {
    await this.check();
    this.timer = setInterval(() => void this.check(), this.deps.intervalMs ?? DAY_MS);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    await this.running;
  }

  /** When the CA and the certificates served expire. */
  expiries(): TlsExpiries {
    const at = (what: 'mqtt' | 'http') => {
      const l = this.deps.listeners.find((x) => x.what === what);
      const ms = l ? certificateNotAfter(l.tls.cert) : undefined;
      return ms === undefined ? null : Math.floor(ms / 1000);
    };
    const previous = this.deps.ca.previousNotAfter;
    return { caExpiresAt: Math.floor(this.deps.ca.notAfter / 1000), previousCaExpiresAt: previous === undefined ? null : Math.floor(previous / 1000), devicesMovedOffPreviousCa: this.deps.ca.movedOffPrevious, mqttCertificateExpiresAt: at('mqtt'), httpCertificateExpiresAt: at('http') };
  }

  /**
   * One look, expiries judged at `nowMs` (tests give a later time): the CA's expiry said, each
   * listener's certificate reissued and swapped in if due. Never throws (logs).
   */
  check(nowMs = Date.now()): Promise<void> {
    this.running ??= this.look(nowMs).finally(() => (this.running = undefined));
    return this.running;
  }

  private async look(now: number): Promise<void> {
    const d = this.deps;
    const caLeft = d.ca.notAfter - now;
    const caAt = new Date(d.ca.notAfter).toISOString();
    if (caLeft <= 0) d.logger.error(`Updraft's CA (pki/ca.crt) has EXPIRED: no device or server certificate it issued is accepted any more, so devices on MQTTS cannot connect. Replace it and provision devices with the new one (docs/security.md, "When the CA nears its end")`, { expiredAt: caAt });
    else if (caLeft < CA_WARNING_MS) d.logger.warn(`Updraft's CA (pki/ca.crt) expires in ${Math.floor(caLeft / DAY_MS)} days: no certificate it issues is valid past it (they end with it); plan its replacement, which means provisioning devices with the new CA (docs/security.md, "When the CA nears its end")`, { expiresAt: caAt });
    // a previous CA that expired while the server runs: OpenSSL refuses its chains from then on
    const previous = d.ca.previousNotAfter;
    if (previous !== undefined && previous <= now) d.logger.warn('the previous CA (pki/previous-ca.crt) has expired: client certificates it issued are refused from now on; remove it: updraft ca drop-previous', { previousCaExpiresAt: new Date(previous).toISOString() });
    for (const l of d.listeners) {
      try {
        if (l.certFile || l.keyFile) {
          const end = certificateNotAfter(l.tls.cert);
          if (end !== undefined && end - now < 30 * DAY_MS) d.logger.warn(`the TLS certificate of ${l.what}.tlsCert ${end <= now ? 'has EXPIRED' : 'expires soon'}: replace the certificate and key files (the server reads them again every tls.reloadSeconds; Updraft renews only the certificates its CA issued)`, { file: l.certFile, notAfter: new Date(end).toISOString() });
          continue;
        }
        // the certificate served is judged (the file may already be a newer one, written for
        // the other listener: then that one is taken, not another issued)
        if (needsRenewal(l.tls.cert, l.tls.key, d.ca, now) === undefined) continue;
        // under the data directory's setup lock, as at start: instances sharing one pki/ each
        // write server.key, server.crt and server-hosts.json, one rename at a time, and two
        // doing so at once left one's key beside the other's certificate (a reviewer's race);
        // the one that waited reads what the first wrote
        const next = await whileSettingUp(d.dataDir, () => resolveServerTls({ dataDir: d.dataDir, ca: d.ca, certFile: '', keyFile: '', hosts: d.hosts, what: `${l.what}.tls`, logger: d.logger, now }), { logger: d.logger });
        if (next.cert === l.tls.cert) continue;
        l.apply(next);
        l.tls = next;
        d.logger.info(`the ${l.what === 'mqtt' ? 'MQTTS' : 'HTTPS'} listener serves the new server certificate from its next connection on`, { notAfter: new Date(certificateNotAfter(next.cert) ?? 0).toISOString() });
      } catch (err) {
        d.logger.error(`the server certificate of the ${l.what} listener could not be renewed; tried again in a day`, { error: (err as Error).message });
      }
    }
  }
}
