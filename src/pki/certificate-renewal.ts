/**
 * Renews devices' client certificates over MQTT (`state/{id}/certificate/renew` →
 * `.../accepted|rejected`, clientToken echoed), so that a fleet authenticated by
 * certificates is not locked out when they expire (two years after their issue).
 *
 * The device makes a new key pair and keeps the private key; it sends a certificate signing
 * request (PKCS #10, signed by the new key: it holds it) with its current certificate and a
 * signature of the request by the current certificate's key. The service issues a
 * certificate for the new key only when:
 * - the request comes from that device (the topic ACL lets a device publish on its own
 *   topics only), registered and not revoked;
 * - the current certificate is one this server's CA issued to that device (to this
 *   registration of its id, as the broker checks at CONNECT), unexpired;
 * - the current key signed the request: whoever asks holds the device's current identity,
 *   whatever the broker (the embedded one or Mosquitto) and however the connection was
 *   authenticated. A device secret alone gets no certificate: a leaked secret, replaced
 *   since, must not have become a certificate that outlives its replacement;
 * - the request names the device and carries an RSA key of at least 2048 bits.
 *
 * One renewal per device an hour at most (per instance): a device, buggy or taken, cannot
 * keep the CA busy (signing takes about a millisecond; the request's checks a few).
 *
 * Revoking the device refuses every certificate it holds, the renewed ones too. Near the CA's
 * end (it ends within a day of the current certificate) nothing is issued: the new one would
 * end no later (409).
 */
import { verify, type KeyObject } from 'node:crypto';
import { promisify } from 'node:util';
import { routeRequests, type InboundMessage, type MessageBus } from '../broker/message-bus.ts';
import { answerDeviceRequest, requestBody } from '../broker/device-request.ts';
import { UpdraftError } from '../errors.ts';
import { readClientToken, type Rejection } from '../protocol/shadow-messages.ts';
import { certificateAnswerTopic, parseCertificateRenewTopic } from '../protocol/topics.ts';
import type { StateStore } from '../store/state-store.ts';
import type { Logger } from '../util/logger.ts';
import { rememberLru } from '../util/lru.ts';
import { NotYetLog } from './not-yet-log.ts';
import type { CertificateAuthority } from './certificate-authority.ts';
import { recordIssued } from './revocation-list.ts';

/** crypto.verify's callback form: OpenSSL on libuv's thread pool. */
const verifyOffThread = promisify(verify) as (algorithm: string, data: Buffer, key: KeyObject, signature: Buffer) => Promise<boolean>;

const DAY_MS = 86_400_000;

/**
 * The `reason` of a renewal asked because a CA of the device's --ca bundle succeeds the CA of
 * its certificate (a rollover), before the certificate is due: refused (409) while the
 * certificate is of this server's current CA.
 */
export const CA_MOVE_REASON = 'newer-ca';

/**
 * The "not yet" refusals (a CA prepared, not switched to) are said at most once in this long,
 * with their count, each device once (not-yet-log.ts): a WARN line per device per hour would
 * bury what is wrong in a fleet's log for the weeks between `ca rollover --prepare` and the
 * switch, and agents whose bundle holds an unrelated rollover's CA ask for good.
 */
export { NOT_YET_LOG_INTERVAL_MS } from './not-yet-log.ts';

/** The largest request taken: a CSR and a certificate of a 4096-bit key fit four times over. */
export const MAX_RENEWAL_BYTES = 16_384;

/** The accepted answer. */
export interface CertificateRenewed {
  /** PEM of the new certificate, for the key of the request. */
  certificate: string;
  /** Its expiry, in seconds since the epoch. */
  notAfter: number;
  timestamp: number;
  clientToken?: string;
}

/** What the service needs. */
export interface CertificateRenewalDeps {
  store: StateStore;
  ca: CertificateAuthority;
  /** Where answers are published. */
  publish: (topic: string, payload: string) => Promise<void>;
  logger: Logger;
  /** Validity of a renewed certificate, in days (default 730, as issued by `updraft device cert`). */
  days?: number;
  /** Least time between two renewals of one device, in ms (default an hour): a device, buggy or taken, cannot keep the CA busy. */
  minIntervalMs?: number;
  /** Milliseconds since the epoch (tests). */
  now?: () => number;
}

/** Issues renewed device certificates. */
export class CertificateRenewal {
  private readonly deps: CertificateRenewalDeps;
  /** When each device was last given a certificate here (the most recent 100,000). */
  private readonly renewedAt = new Map<string, number>();
  /** Says the "not yet" refusals: each device once, one line an hour at most. */
  private readonly notYet: NotYetLog;

  constructor(deps: CertificateRenewalDeps) {
    this.deps = deps;
    this.notYet = new NotYetLog(deps.logger, () => this.now());
  }

  private now(): number {
    return this.deps.now ? this.deps.now() : Date.now();
  }

  /** Handles one request; never throws (answers on the rejected topic instead); resolves once answered. */
  handle(msg: InboundMessage): Promise<void> {
    const parsed = parseCertificateRenewTopic(msg.topic);
    if (!parsed) return Promise.resolve();
    const { deviceId } = parsed;
    const d = this.deps;
    const o = { deviceId, msg, rejectedTopic: certificateAnswerTopic(deviceId, 'rejected'), what: 'certificate renewal', refusedLevel: 'warn' as const, publish: d.publish, logger: d.logger, nowSeconds: () => Math.floor(this.now() / 1000) };
    return answerDeviceRequest(o, () => this.answer(deviceId, msg));
  }

  private async answer(deviceId: string, msg: InboundMessage): Promise<void> {
    if (msg.sender.kind === 'device' && msg.sender.id !== deviceId) throw new UpdraftError('FORBIDDEN', 'a device may renew its own certificate only');
    const body = requestBody(msg.payload, MAX_RENEWAL_BYTES, 'certificate renewal request');
    const clientToken = readClientToken(body);
    const { csr, certificate, signature, reason } = body;
    const problems: string[] = [];
    if (typeof csr !== 'string') problems.push('csr (the PEM certificate signing request of the new key)');
    if (typeof certificate !== 'string') problems.push('certificate (the PEM of the current certificate)');
    if (typeof signature !== 'string' || !/^[A-Za-z0-9+/]+={0,2}$/.test(signature)) problems.push('signature (base64 RSA-SHA256 of csr by the current key)');
    if (problems.length > 0) throw new UpdraftError('BAD_REQUEST', `missing or malformed: ${problems.join(', ')}`);
    const device = await this.deps.store.getDevice(deviceId);
    if (!device) throw new UpdraftError('NOT_FOUND', `device ${deviceId} is not registered`);
    if (device.revoked) throw new UpdraftError('FORBIDDEN', 'device revoked');
    const last = this.renewedAt.get(deviceId);
    const minInterval = this.deps.minIntervalMs ?? 3_600_000;
    if (last !== undefined && this.now() - last < minInterval) {
      throw new UpdraftError('TOO_MANY_REQUESTS', `this device was given a certificate ${Math.round((this.now() - last) / 1000)} s ago; ask again after ${new Date(last + minInterval).toISOString()}`);
    }
    const current = this.deps.ca.deviceCertificateKey(certificate as string, deviceId, this.now());
    // as at CONNECT (broker/registry-authenticator.ts): a certificate is for the registration it
    // was issued to, not for a device registered later under the same id (whole seconds)
    if (current.issuedAt + 1000 <= device.createdAt) throw new UpdraftError('FORBIDDEN', 'the current certificate was issued before this device was registered (to an earlier device of this id)');
    // on the thread pool, as the request's own signature and the new certificate's (certificate-authority.ts)
    const proven = await verifyOffThread('sha256', Buffer.from(csr as string, 'utf8'), current.key, Buffer.from(signature as string, 'base64')).catch(() => false);
    if (!proven) throw new UpdraftError('FORBIDDEN', "the request is not signed by the current certificate's key");
    // an agent whose --ca names a successor of its certificate's CA asks before its certificate
    // is due (agent/certificate-renewer.ts): while this server still issues from that CA (the
    // successor prepared, not switched to yet), a new certificate would move it nowhere.
    // Refused as "not yet" (409) before anything is signed; the agent asks again later.
    if (reason === CA_MOVE_REASON && !current.byPreviousCa) {
      const message = `the current certificate is already of this server's CA (pki/ca.crt, until ${new Date(this.deps.ca.notAfter).toISOString()}): it moves to a newer CA once the server has switched to it (updraft ca rollover)`;
      await this.refuseNotYet(deviceId, message, clientToken);
      return;
    }
    // Near the CA's end a new certificate ends with the CA, where this one does: signing gains
    // nothing, and the agents deployed before 2026-12 would ask again at every connect (and
    // meet a 429 within the hour) for weeks. Refused as final (409): agents since stop asking.
    const caEnd = this.deps.ca.notAfter;
    if (!current.byPreviousCa && caEnd <= current.expiresAt + DAY_MS) {
      throw new UpdraftError('CONFLICT', `Updraft's CA (pki/ca.crt) ends at ${new Date(caEnd).toISOString()}: a renewed certificate would end no later than the current one (${new Date(current.expiresAt).toISOString()}); the CA must be replaced (docs/security.md, "Server certificates and the CA's end")`);
    }
    const issued = await this.deps.ca.issueDeviceCertificateFromRequest(deviceId, csr as string, this.deps.days);
    // recorded before it is sent: its serial is what the CRL lists once the device is deleted
    await recordIssued(this.deps.store, deviceId, issued.certificate, this.deps.ca.certificate, this.deps.logger);
    rememberLru(this.renewedAt, deviceId, this.now(), 100_000);
    const accepted: CertificateRenewed = { certificate: issued.certificate, notAfter: issued.notAfter, timestamp: Math.floor(this.now() / 1000) };
    if (clientToken !== undefined) accepted.clientToken = clientToken;
    // a certificate of the previous CA is replaced by one of the current CA: the device has moved
    if (current.byPreviousCa) this.deps.ca.noteMovedOffPrevious();
    this.deps.logger.info('device certificate renewed', { deviceId, notAfter: new Date(issued.notAfter * 1000).toISOString(), ...(current.byPreviousCa ? { movedFromPreviousCa: true } : {}) });
    await this.deps.publish(certificateAnswerTopic(deviceId, 'accepted'), JSON.stringify(accepted));
  }

  /**
   * Answers a move asked too early (409, as every refusal) and logs it (not-yet-log.ts): each
   * device once, the first at once, then one line an hour at most with the devices since.
   */
  private async refuseNotYet(deviceId: string, message: string, clientToken: string | undefined): Promise<void> {
    const now = this.now();
    this.notYet.refused(deviceId, message);
    const rejection: Rejection = { code: 409, message, timestamp: Math.floor(now / 1000) };
    if (clientToken !== undefined) rejection.clientToken = clientToken;
    await this.deps.publish(certificateAnswerTopic(deviceId, 'rejected'), JSON.stringify(rejection)).catch(() => {});
  }
}

/** A MessageBus that hands certificate renewals to `service` and every other request on. */
export function withCertificateRenewal(bus: MessageBus, service: CertificateRenewal): MessageBus {
  return routeRequests(bus, (msg, next) => (parseCertificateRenewTopic(msg.topic) ? service.handle(msg) : next(msg)));
}
