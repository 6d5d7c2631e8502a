/**
 * The signing key certificate's expiry, said in the log (docs/security.md, "Renew"): a warning
 * from 30 days before it, an error once it has passed (devices that trust the root then refuse
 * every update). Said at start, when a certificate is installed on this instance or taken in
 * from another (signing/shared-certificate.ts), and by an hourly look while the server runs:
 * a server runs for months, and a certificate checked at start only crossed both points with
 * no line at all. The same state of the same certificate is said at most once a day, so an
 * alert on the line fires daily, not hourly.
 */
import type { KeyCertificate } from '../protocol/key-certificate.ts';
import type { Logger } from '../util/logger.ts';
import type { ManifestSigner } from './manifest-signer.ts';

/** From how many days before its expiry a certificate is warned about. */
export const EXPIRY_WARNING_DAYS = 30;

const DAY_MS = 86_400_000;

/** Where a certificate stands: `expiring` within `EXPIRY_WARNING_DAYS`, `expired` once past. */
export type CertificateExpiryState = 'valid' | 'expiring' | 'expired';

/** Where `c` stands at `nowMs`. */
export function certificateExpiryState(c: KeyCertificate, nowMs: number): CertificateExpiryState {
  const daysLeft = (c.expiresAt * 1000 - nowMs) / DAY_MS;
  return daysLeft <= 0 ? 'expired' : daysLeft < EXPIRY_WARNING_DAYS ? 'expiring' : 'valid';
}

/** Logs where `c` stands at `nowMs` (nothing while valid); returns it. */
export function logCertificateExpiry(c: KeyCertificate, logger: Logger, nowMs: number): CertificateExpiryState {
  const state = certificateExpiryState(c, nowMs);
  const at = new Date(c.expiresAt * 1000).toISOString();
  // an expired certificate is refused by every device that trusts the root: said loudly, but
  // the server still runs (devices provisioned with the signing key itself are not affected)
  if (state === 'expired') logger.error('the software signing key certificate has EXPIRED: devices that trust the root refuse every update. Certify the key again (updraft keys certify) and install it (updraft keys install-cert)', { keyId: c.keyId, serial: c.serial, expiredAt: at });
  else if (state === 'expiring') logger.warn('the software signing key certificate expires soon: certify the key again (updraft keys certify) and install it (updraft keys install-cert)', { keyId: c.keyId, serial: c.serial, expiresAt: at, daysLeft: Math.floor((c.expiresAt * 1000 - nowMs) / DAY_MS) });
  return state;
}

/** What the watch needs. */
export interface CertificateExpiryWatchDeps {
  /** Its `certificate` is the one commands carry, replaced by installations. */
  manifests: ManifestSigner;
  logger: Logger;
  /** How often to look, in ms (default an hour). */
  intervalMs?: number;
  /** The clock, in ms since the epoch (default `Date.now`; tests move it). */
  now?: () => number;
}

/** Says the certificate's expiry at start, on `check()`, and every `intervalMs`; the same state of one certificate once a day at most. */
export class CertificateExpiryWatch {
  private readonly deps: CertificateExpiryWatchDeps;
  private timer: NodeJS.Timeout | undefined;
  /** What was said last, and when. */
  private last: { what: string; at: number } | undefined;

  constructor(deps: CertificateExpiryWatchDeps) {
    this.deps = deps;
  }

  async start(): Promise<void> {
    this.check();
    this.timer = setInterval(() => this.check(), this.deps.intervalMs ?? 3_600_000);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  /** Looks now: after an installation, and from the timer. */
  check(): void {
    const c = this.deps.manifests.certificate;
    if (!c) return;
    const now = (this.deps.now ?? Date.now)();
    const state = certificateExpiryState(c, now);
    if (state === 'valid') {
      this.last = undefined;
      return;
    }
    // another certificate (a renewal that still expires soon) or another state is said at once
    const what = `${c.rootKeyId}/${c.keyId}/${c.serial}/${state}`;
    if (this.last?.what === what && now - this.last.at < DAY_MS) return;
    this.last = { what, at: now };
    logCertificateExpiry(c, this.deps.logger, now);
  }
}
