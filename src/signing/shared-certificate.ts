/**
 * The signing key's certificate shared by every instance on one store (docs/deployment.md).
 * A certificate installed on one instance (`updraft keys install-cert` through the load
 * balancer, or `--offline` in one data directory before a start) is written to the store's
 * `settings`; every instance takes in a newer one than its own at once when the instances'
 * event relay tells it, and every `intervalMs` anyway (the relay is not durable). Taking it in
 * is an installation like the operator's (`installKeyCertificate`): it must be the installed
 * root's, for this instance's signing key, unexpired, and above the installed serial; it is
 * written to the data directory too, so a restart starts with it.
 *
 * The store is trusted no further than that: whoever can write it can make an instance send
 * a certificate the installed root signed for its own key (or a root the installed one rotated
 * to, with its rotations: `protocol/root-rotation.ts`), nothing else. An instance with no
 * root installed takes the root from the store with the first certificate, as the first
 * `install-cert --root-public` would. A certificate of another key (the signing key was
 * replaced elsewhere, and this instance still runs the old one) is not taken: it is logged,
 * once, since this instance's commands are then refused by the devices that saw it.
 */
import { readFile } from 'node:fs/promises';
import { UpdraftError } from '../errors.ts';
import type { EventBus } from '../events/event-bus.ts';
import { parseKeyCertificate } from '../protocol/key-certificate.ts';
import { parseRootRotations } from '../protocol/root-rotation.ts';
import type { StateStore } from '../store/state-store.ts';
import type { Logger } from '../util/logger.ts';
import type { CertificateExpiryWatch } from './certificate-expiry.ts';
import type { ManifestSigner } from './manifest-signer.ts';
import { installKeyCertificate, keyCertificatePaths, type InstalledKeyCertificate } from './root-key.ts';
import type { SoftwareSigningKey } from './signing-key.ts';

/** The settings key. */
export const SHARED_CERTIFICATE_KEY = 'signing.certificate';

/** What sharing needs. */
export interface SharedCertificateDeps {
  store: StateStore;
  dataDir: string;
  signingKey: SoftwareSigningKey;
  /** Sends the certificate with every command; updated when a newer one is taken in. */
  manifests: ManifestSigner;
  /** `keys.certificate` tells the other instances (relayed) to look now. */
  events: EventBus;
  logger: Logger;
  /** Says a certificate taken in that expires within 30 days, or has expired. */
  certificateExpiry: CertificateExpiryWatch;
  /** How often the store is read anyway, in ms (default 30 s). */
  intervalMs?: number;
}

/** Shares this instance's certificate through the store, and takes in newer ones. */
export class SharedCertificate {
  private readonly deps: SharedCertificateDeps;
  private timer: NodeJS.Timeout | undefined;
  private off: (() => void) | undefined;
  private turn: Promise<unknown> = Promise.resolve();
  /** What was last said about a certificate not taken in (said once). */
  private lastRefusal: string | undefined;

  constructor(deps: SharedCertificateDeps) {
    this.deps = deps;
  }

  async start(): Promise<void> {
    await this.sync();
    this.off = this.deps.events.on('keys.certificate', () => void this.sync());
    this.timer = setInterval(() => void this.sync(), this.deps.intervalMs ?? 30_000);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.off?.();
    await this.turn;
  }

  /** After an installation on this instance: into the store, and the others told. */
  async publish(installed: InstalledKeyCertificate): Promise<void> {
    await this.deps.store.putSetting(SHARED_CERTIFICATE_KEY, JSON.stringify(installed));
    this.deps.events.emit('keys.certificate', { serial: installed.certificate.serial });
  }

  /** One comparison of this instance's certificate with the store's, one at a time. */
  sync(): Promise<void> {
    const run = this.turn.then(() => this.compare());
    this.turn = run.catch(() => {});
    return run.catch((err: unknown) => this.deps.logger.warn('could not compare the signing key certificate with the shared one; trying again later', { error: (err as Error).message }));
  }

  private async compare(): Promise<void> {
    const d = this.deps;
    const mine = d.manifests.certificate;
    const text = await d.store.getSetting(SHARED_CERTIFICATE_KEY);
    let shared: InstalledKeyCertificate | undefined;
    if (text !== undefined) {
      try {
        const raw = JSON.parse(text) as { certificate?: unknown; rootPublicKeyPem?: unknown; rootRotations?: unknown };
        if (typeof raw.rootPublicKeyPem !== 'string') throw new Error('no root public key');
        // none from an instance older than root rotation
        const rootRotations = raw.rootRotations === undefined ? [] : parseRootRotations(raw.rootRotations);
        shared = { certificate: parseKeyCertificate(raw.certificate, 'certificate'), rootPublicKeyPem: raw.rootPublicKeyPem, rootRotations };
      } catch (err) {
        this.refused(`the shared signing key certificate in the store is unreadable (${(err as Error).message}); it is replaced by this instance's`, 'error');
      }
    }
    if (mine && (!shared || shared.certificate.serial < mine.serial)) {
      // this instance has a newer one (installed offline before its start): the others take it from here
      const installedRoot = await this.rootOf();
      if (installedRoot) await this.publish({ certificate: mine, rootPublicKeyPem: installedRoot, rootRotations: [...d.manifests.rootRotations] });
      return;
    }
    if (!shared || (mine && shared.certificate.serial <= mine.serial)) return;
    if (shared.certificate.keyId !== d.signingKey.keyId) {
      this.refused(`the shared signing key certificate ${shared.certificate.serial} certifies key ${shared.certificate.keyId}, not this instance's ${d.signingKey.keyId}: the signing key was replaced on another instance; give this one the new key and restart it, or devices that saw the new certificate refuse its commands`, 'error');
      return;
    }
    try {
      const installed = await installKeyCertificate(d.dataDir, d.signingKey, shared.certificate, { rootPublicKeyPem: shared.rootPublicKeyPem, rootRotations: shared.rootRotations });
      const rotated = mine !== undefined && mine.rootKeyId !== installed.certificate.rootKeyId;
      d.manifests.useCertificate(installed);
      this.lastRefusal = undefined;
      d.logger.info(`took in the signing key certificate installed on another instance${rotated ? ', of a new root' : ''}: update commands carry it from now on`, { keyId: installed.certificate.keyId, serial: installed.certificate.serial, rootKeyId: installed.certificate.rootKeyId });
      d.certificateExpiry.check();
    } catch (err) {
      if (!(err instanceof UpdraftError)) throw err;
      this.refused(`the shared signing key certificate ${shared.certificate.serial} is not taken in: ${err.message}`, 'warn');
    }
  }

  /** The installed root's public key (PEM), if any. */
  private rootOf(): Promise<string | undefined> {
    return readFile(keyCertificatePaths(this.deps.dataDir).rootPub, 'utf8').catch(() => undefined);
  }

  private refused(message: string, level: 'warn' | 'error'): void {
    if (this.lastRefusal === message) return;
    this.lastRefusal = message;
    this.deps.logger[level](message);
  }
}
