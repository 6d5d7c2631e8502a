/**
 * Renews the agent's MQTT client certificate before it expires (server side:
 * `pki/certificate-renewal.ts`). When fewer than `renewBeforeDays` are left (each device
 * waits until a point it picks at random in the second half of that window), the agent makes
 * a new RSA key (it never leaves the device), asks for a certificate of it with a request
 * signed by the new key and, as proof that it holds the current identity, by the current
 * certificate's key; it checks the answer (its CN, the new key, the CA when it has one),
 * hands the pair to `save` (the daemon writes its files) and uses it from its next
 * connection. A failed attempt is logged and tried again at the next check.
 *
 * Near the CA's end a renewal gains nothing: the CA issues nothing that outlives it, so the
 * new certificate would end when the current one does, still inside the window, and the
 * agent would renew again at every check (a new key and a rewrite of its files per connect,
 * a refusal for the hour after, for weeks). The agent does not ask when the CA that issued
 * its certificate ends within a day of it, and takes the server's refusal of such a renewal
 * (409, from servers that know, and from an expired CA) as final for this certificate.
 *
 * When the server's CA is rolled over (`updraft ca rollover`, docs/security.md), the agent
 * moves to the new CA by itself: when a CA of its --ca bundle, valid now, names the CA that
 * issued its certificate as the one it replaces (the previous-CA hash extension, which the
 * rollover writes), it renews at the next check (each connect, twice a day), whatever the date,
 * saying why (`reason: "newer-ca"`). The bundle is the signal because the device needs the new
 * CA there anyway (the server's certificate is reissued by it), and it costs no protocol of
 * its own; the extension, not a mere newer CA, because a bundle may hold an unrelated CA (that
 * of an operator's own server certificate). While the server still issues from the old CA
 * (the new one prepared and given to devices, not switched to yet) it refuses such a request
 * (409) before signing anything, and the agent asks again an hour later at the earliest.
 *
 * A --ca that holds only the new CA (what `updraft device cert` writes after the switch, or
 * `pki/ca.crt` copied then) names no CA that issued the agent's certificate, so no successor
 * can be found by the extension's hash: such an agent stayed on the previous CA until
 * `drop-previous` cut it off (QA, 2026-12-06). When no CA of the bundle issued the agent's
 * certificate and one, valid now, was made by a rollover (it carries the extension), the agent
 * asks to move as well: it reached the server through that bundle, so the server's certificate
 * is of that CA, which it issues only after the switch. The signal is weaker (an operator's own
 * server CA renewed by another product may carry the same extension), so the server's "not
 * yet" there holds the next ask for a day, across reconnects.
 */
import { X509Certificate, createHash, createPrivateKey, generateKeyPair, sign } from 'node:crypto';
import { readFile, rename, unlink } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import forge from 'node-forge';
import { UpdraftError, asUpdraftError } from '../errors.ts';
import type { JsonObject } from '../protocol/json.ts';
import type { Logger } from '../util/logger.ts';
import { syncDir, writeFileAtomic } from '../util/atomic-file.ts';

const generateKeyPairAsync = promisify(generateKeyPair);
const DAY_MS = 86_400_000;
/** The DER of the previous-CA hash extension's OID (1.3.6.1.4.1.311.21.2, pki/certificate-authority.ts PREVIOUS_CA_HASH_OID). */
const PREVIOUS_CA_HASH_OID_DER = Buffer.from('06092b0601040182371502', 'hex');
/** The `reason` of a renewal asked to move to a newer CA (pki/certificate-renewal.ts CA_MOVE_REASON). */
export const CA_MOVE_REASON = 'newer-ca';
/** After a move the server refused (409: it has not switched yet) or that failed, asked again no sooner than this. */
export const MOVE_RETRY_MS = 3_600_000;
/** After a renewal that stayed with the old CA (a server that ignores the reason), no move asked for this long. */
const MOVE_STAYED_MS = DAY_MS;

/** A client certificate and its private key, PEM. */
export interface TlsPair {
  certificate: string;
  privateKey: string;
}

/** How the agent renews its certificate (`UpdateAgentOptions.certificateRenewal`). */
export interface CertificateRenewalOptions {
  /** Renew when fewer than this many days are left (default 30). */
  renewBeforeDays?: number;
  /** Keeps the new pair durably (the daemon writes its files); the agent uses it from its next connection. */
  save: (renewed: TlsPair) => Promise<void>;
}

/** The expiry of a PEM certificate, in ms since the epoch. CONFIG when it is none. */
export function certificateExpiry(pem: string): number {
  try {
    return Date.parse(new X509Certificate(pem).validTo);
  } catch (err) {
    throw new UpdraftError('CONFIG', `the client certificate is not a PEM X.509 certificate: ${(err as Error).message}`);
  }
}

/** The certificates of a PEM bundle (`--ca`: one CA, or several while one replaces another). */
export function bundleCertificates(pem: string): X509Certificate[] {
  const out: X509Certificate[] = [];
  for (const block of pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []) {
    try {
      out.push(new X509Certificate(block));
    } catch {
      /* not a certificate: TLS would not trust it either */
    }
  }
  return out;
}

/** True when `cert` is valid at `nowMs`. */
function validAt(cert: X509Certificate, nowMs: number): boolean {
  return Date.parse(cert.validFrom) <= nowMs && nowMs < Date.parse(cert.validTo);
}

/** The certificate of `cas` that issued (and signed) `cert`, if any. */
function issuerOf(cert: X509Certificate, cas: X509Certificate[]): X509Certificate | undefined {
  return cas.find((ca) => cert.checkIssued(ca) && cert.verify(ca.publicKey));
}

/**
 * The CA of `cas`, valid at `nowMs`, that names `issuer` as the CA it replaces (its previous-CA
 * hash extension holds the SHA-1 of `issuer`'s DER, as a rollover writes it), if any.
 */
export function successorOf(issuer: X509Certificate, cas: X509Certificate[], nowMs: number): X509Certificate | undefined {
  const hash = createHash('sha1').update(issuer.raw).digest();
  return cas.find((ca) => ca !== issuer && ca.ca && validAt(ca, nowMs) && ca.raw.includes(PREVIOUS_CA_HASH_OID_DER) && ca.raw.includes(hash));
}

/** Renews one device's certificate, one attempt at a time. */
export class CertificateRenewer {
  private pair: TlsPair;
  private expiresAt: number;
  private running: Promise<boolean> | undefined;
  private readonly renewBeforeMs: number;
  /** The CAs of `deps.ca` (a bundle: any of them may have issued the device's certificates), or of the bundle that replaced it (`replaced`). */
  private cas: X509Certificate[];
  /** True when the agent verifies the broker with CAs: a renewed certificate must be of one of them. */
  private checksCa: boolean;
  /** The certificate whose renewal gains nothing (its CA ends with it, or the server said so): not asked again, said once. */
  private futile: string | undefined;
  /** No move to a newer CA is asked before this time (ms): the server refused one, or it failed. */
  private moveHeldUntil = 0;
  /** The hold is the server's "not yet" (409: it has not switched to the new CA): a new connection ends it. */
  private heldForNotYet = false;

  constructor(
    private readonly deps: {
      deviceId: string;
      current: TlsPair;
      /** The CAs (PEM, one or a bundle) one of which must have issued the new certificate, when the agent verifies the broker with them. */
      ca?: string;
      options: CertificateRenewalOptions;
      /** Sends the renewal request and resolves with the accepted answer (the agent's requester). */
      request: (body: JsonObject) => Promise<JsonObject>;
      /** Uses the new pair from the next connection on. */
      use: (renewed: TlsPair) => void;
      /** Told why an attempt failed (the agent reports it, so the operator sees it too). */
      onFailure?: (message: string) => void;
      logger: Logger;
      /** The server's time, in ms (the agent's clock corrected by the offset it measured). */
      now: () => number;
    },
  ) {
    this.pair = deps.current;
    this.expiresAt = certificateExpiry(deps.current.certificate);
    // each device picks its point in the second half of the window: a fleet provisioned on
    // one day does not renew in one burst when the window opens (every check, twice a day)
    this.renewBeforeMs = (deps.options.renewBeforeDays ?? 30) * DAY_MS * (0.5 + Math.random() / 2);
    this.cas = deps.ca === undefined ? [] : bundleCertificates(deps.ca);
    this.checksCa = deps.ca !== undefined;
  }

  /**
   * The agent's TLS files were replaced on the device (`UpdateAgentOptions.reloadTls`): a new
   * CA bundle (which may name a newer CA to move to, so a held move is asked again) and a new
   * certificate and key (renewed from now on, not the one the agent started with). A
   * certificate given up on as futile may be renewable under the new CA or as the new pair.
   */
  replaced(what: { ca?: string; pair?: TlsPair }): void {
    if (what.ca !== undefined) {
      this.cas = bundleCertificates(what.ca);
      this.checksCa = true;
      this.moveHeldUntil = 0;
      this.heldForNotYet = false;
      this.futile = undefined;
    }
    if (what.pair !== undefined) {
      this.pair = what.pair;
      this.expiresAt = certificateExpiry(what.pair.certificate);
    }
  }

  /** When the certificate in use expires, in seconds since the epoch. */
  get expiresAtSeconds(): number {
    return Math.floor(this.expiresAt / 1000);
  }

  /**
   * A new connection to the server: a move the server answered "not yet" is asked again at
   * once. The switch to the new CA (`updraft ca rollover`) is made with the server stopped, so
   * its devices reconnect right after it: that is when they can move. The hour's hold outlived
   * reconnects, and agents given the bundle before the switch (as the docs say) stayed on the
   * old CA for an hour and then until their next reconnect or 12-hour check (QA, 2026-12-06).
   */
  connected(): void {
    if (!this.heldForNotYet) return;
    this.heldForNotYet = false;
    this.moveHeldUntil = 0;
  }

  /** Renews when the certificate is due; resolves true when it was renewed now. Never throws: a failure is logged, and the next check tries again. */
  check(): Promise<boolean> {
    if (this.running) return this.running;
    const now = this.deps.now();
    const successor = now >= this.moveHeldUntil ? this.successor(now) : undefined;
    if (successor !== undefined) return this.move(successor);
    if (this.expiresAt - now > this.renewBeforeMs) return Promise.resolve(false);
    if (this.futile === this.pair.certificate) return Promise.resolve(false);
    const caEnd = this.issuingCaEnd();
    if (caEnd !== undefined && caEnd <= this.expiresAt + DAY_MS) {
      this.giveUp(`the CA that issued it ends at ${new Date(caEnd).toISOString()}: a renewed certificate would end no later, so renewal gains nothing until the CA is replaced (docs/security.md, "When the CA nears its end")`);
      return Promise.resolve(false);
    }
    this.running = this.renew()
      .then(() => true)
      .catch((err: unknown) => {
        const e = asUpdraftError(err);
        const message = e.message;
        // the server refuses a renewal that gains nothing (the CA ends with this certificate,
        // or has expired): asking again at every connect would not change its answer, and
        // the fleet would show a renewal error for weeks; the CA's end is the server's to warn of
        if (e.code === 'CONFLICT') {
          this.giveUp(message);
          return false;
        }
        this.deps.logger.warn('client certificate not renewed; trying again later', { error: message, expiresAt: new Date(this.expiresAt).toISOString() });
        this.deps.onFailure?.(message);
        return false;
      })
      .finally(() => (this.running = undefined));
    return this.running;
  }

  /**
   * The CA of the bundle that replaces the one that issued the current certificate, if any;
   * `orphan` when no CA of the bundle issued it and this one is a rollover's CA (the class doc).
   */
  private successor(nowMs: number): { ca: X509Certificate; orphan: boolean } | undefined {
    if (this.cas.length === 0) return undefined;
    try {
      const issuer = issuerOf(new X509Certificate(this.pair.certificate), this.cas);
      if (issuer !== undefined) {
        const ca = successorOf(issuer, this.cas, nowMs);
        return ca === undefined ? undefined : { ca, orphan: false };
      }
      const ca = this.cas.find((c) => c.ca && validAt(c, nowMs) && c.raw.includes(PREVIOUS_CA_HASH_OID_DER));
      return ca === undefined ? undefined : { ca, orphan: true };
    } catch {
      return undefined;
    }
  }

  /** Renews now to move to `successor`'s CA; a refusal holds further moves for an hour (a day for an orphan's "not yet"). */
  private move(successor: { ca: X509Certificate; orphan: boolean }): Promise<boolean> {
    const hold = (ms: number) => (this.moveHeldUntil = this.deps.now() + ms);
    const why = successor.orphan ? 'no CA of --ca issued it, and one of them was made by a CA rollover' : 'a CA of --ca replaces the one that issued it';
    this.deps.logger.info(`client certificate renewal asked early: ${why}`, { newCa: successor.ca.subject.replace(/\n/g, ', '), expiresAt: new Date(this.expiresAt).toISOString() });
    this.running = this.renew(CA_MOVE_REASON)
      .then(() => {
        // a server that ignores the reason renews from the old CA: not asked again at every connect
        this.heldForNotYet = false;
        if (this.successor(this.deps.now()) !== undefined) hold(MOVE_STAYED_MS);
        return true;
      })
      .catch((err: unknown) => {
        const e = asUpdraftError(err);
        // an orphan's "not yet" may be for good (the bundle's rollover CA is not the server's): a day, not ended by a reconnect
        const orphanNotYet = successor.orphan && e.code === 'CONFLICT';
        hold(orphanNotYet ? MOVE_STAYED_MS : MOVE_RETRY_MS);
        this.heldForNotYet = e.code === 'CONFLICT' && !orphanNotYet;
        if (e.code === 'CONFLICT') {
          // the server has not switched to the new CA yet: nothing is wrong
          this.deps.logger.info('client certificate not moved to the newer CA yet: the server still issues from the current one; asked again later', { reason: e.message });
          return false;
        }
        this.deps.logger.warn('client certificate not moved to the newer CA; trying again later', { error: e.message, expiresAt: new Date(this.expiresAt).toISOString() });
        this.deps.onFailure?.(e.message);
        return false;
      })
      .finally(() => (this.running = undefined));
    return this.running;
  }

  /** When the CA of `deps.ca` that issued the current certificate ends (ms), if one did. */
  private issuingCaEnd(): number | undefined {
    if (this.cas.length === 0) return undefined;
    try {
      const issuer = issuerOf(new X509Certificate(this.pair.certificate), this.cas);
      return issuer === undefined ? undefined : Date.parse(issuer.validTo);
    } catch {
      return undefined;
    }
  }

  /** Stops renewing the current certificate (until it or the CA changes: a new pair, a restart with new files), said once. */
  private giveUp(why: string): void {
    this.futile = this.pair.certificate;
    this.deps.logger.warn('client certificate not renewed: not asked again until the certificate or the CA changes', { reason: why, expiresAt: new Date(this.expiresAt).toISOString() });
  }

  private async renew(reason?: string): Promise<void> {
    const { deviceId } = this.deps;
    const { publicKey, privateKey } = await generateKeyPairAsync('rsa', { modulusLength: 2048, publicKeyEncoding: { type: 'spki', format: 'pem' }, privateKeyEncoding: { type: 'pkcs8', format: 'pem' } });
    const csr = forge.pki.createCertificationRequest();
    csr.publicKey = forge.pki.publicKeyFromPem(publicKey);
    csr.setSubject([{ name: 'commonName', value: deviceId }]);
    csr.sign(forge.pki.privateKeyFromPem(privateKey) as forge.pki.rsa.PrivateKey, forge.md.sha256.create());
    const csrPem = forge.pki.certificationRequestToPem(csr);
    const signature = sign('sha256', Buffer.from(csrPem, 'utf8'), createPrivateKey(this.pair.privateKey)).toString('base64');
    const answer = await this.deps.request({ csr: csrPem, certificate: this.pair.certificate, signature, ...(reason !== undefined ? { reason } : {}) });
    if (typeof answer.certificate !== 'string') throw new UpdraftError('INTEGRITY', 'the renewal answer holds no certificate');
    let issued: X509Certificate;
    try {
      issued = new X509Certificate(answer.certificate);
    } catch {
      throw new UpdraftError('INTEGRITY', 'the renewal answer holds no readable certificate');
    }
    if (!issued.checkPrivateKey(createPrivateKey(privateKey))) throw new UpdraftError('INTEGRITY', 'the renewed certificate is not for the key this device made');
    if (/^CN=(.*)$/m.exec(issued.subject)?.[1] !== deviceId) throw new UpdraftError('INTEGRITY', `the renewed certificate is not ${deviceId}'s`);
    // any CA of the bundle, as TLS trusts any (docs/security.md: old and new CA side by side while one replaces the other)
    if (this.checksCa && issuerOf(issued, this.cas) === undefined) throw new UpdraftError('INTEGRITY', 'the renewed certificate is not signed by a CA this device trusts');
    const renewed = { certificate: answer.certificate, privateKey };
    await this.deps.options.save(renewed);
    this.pair = renewed;
    const previous = this.expiresAt;
    this.expiresAt = Date.parse(issued.validTo);
    this.deps.use(renewed);
    // debug: the 'certificate-renewed' event is the caller's to say (the daemon's line names the file written too)
    this.deps.logger.debug('client certificate renewed: used from the next connection', { previousExpiry: new Date(previous).toISOString(), expiresAt: new Date(this.expiresAt).toISOString() });
  }
}

/**
 * Writes a renewed pair over the files the daemon was given (`--cert`, `--key`): both as
 * `.renewed` first, then the key renamed into place, then the certificate. A stop between the
 * two renames leaves the new key beside the old certificate; `settleRenewedFiles`, run before
 * the files are read, finishes the job (or drops a pair that was not complete).
 */
export async function saveRenewedFiles(files: { cert: string; key: string }, pair: TlsPair): Promise<void> {
  await writeFileAtomic(`${files.key}.renewed`, pair.privateKey, 0o600);
  await writeFileAtomic(`${files.cert}.renewed`, pair.certificate, 0o644);
  await rename(`${files.key}.renewed`, files.key);
  await rename(`${files.cert}.renewed`, files.cert);
  await syncDir(path.dirname(files.cert));
  if (path.dirname(files.key) !== path.dirname(files.cert)) await syncDir(path.dirname(files.key));
}

/** Finishes or undoes a `saveRenewedFiles` that was stopped halfway; returns what it did. */
export async function settleRenewedFiles(files: { cert: string; key: string }): Promise<'nothing' | 'finished' | 'dropped'> {
  const read = (f: string) => readFile(f, 'utf8').catch(() => undefined);
  const [newCert, newKey, key] = await Promise.all([read(`${files.cert}.renewed`), read(`${files.key}.renewed`), read(files.key)]);
  if (newCert === undefined && newKey === undefined) return 'nothing';
  const fits = (cert: string | undefined, k: string | undefined) => {
    if (cert === undefined || k === undefined) return false;
    try {
      return new X509Certificate(cert).checkPrivateKey(createPrivateKey(k));
    } catch {
      return false;
    }
  };
  if (fits(newCert, newKey)) {
    // stopped before the first rename: both new files are whole
    await rename(`${files.key}.renewed`, files.key);
    await rename(`${files.cert}.renewed`, files.cert);
    return 'finished';
  }
  if (newKey === undefined && fits(newCert, key)) {
    // stopped between the renames: the new key is in place, its certificate not yet
    await rename(`${files.cert}.renewed`, files.cert);
    return 'finished';
  }
  // a pair not written whole: the old files are as they were
  await Promise.all([unlink(`${files.cert}.renewed`).catch(() => {}), unlink(`${files.key}.renewed`).catch(() => {})]);
  return 'dropped';
}
