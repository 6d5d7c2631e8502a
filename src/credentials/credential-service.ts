/**
 * Answers devices asking for a temporary download credential over MQTT
 * (`state/{id}/credentials/request` → `.../accepted|rejected`, clientToken echoed): a token
 * whose only right is reading the artifact of the device's current job, i.e. the desired
 * software in its shadow, for `ttlSeconds`.
 */
import { answerDeviceRequest, requestBody } from '../broker/device-request.ts';
import { UpdraftError } from '../errors.ts';
import { routeRequests, type InboundMessage, type MessageBus } from '../broker/message-bus.ts';
import { readClientToken } from '../protocol/shadow-messages.ts';
import { parseDesiredSoftware } from '../protocol/software.ts';
import { credentialsAnswerTopic, parseCredentialsRequestTopic } from '../protocol/topics.ts';
import type { StateStore } from '../store/state-store.ts';
import type { Logger } from '../util/logger.ts';
import type { DownloadTokens } from './download-token.ts';

/** The accepted answer. */
export interface CredentialsAccepted {
  /** `Authorization: Bearer <token>` on `GET /v1/download/{name}/{version}?device={id}`. */
  token: string;
  /** Seconds since the epoch. */
  expiresAt: number;
  name: string;
  version: string;
  jobId: string;
  timestamp: number;
  clientToken?: string;
}

/** What the service needs. */
export interface CredentialServiceDeps {
  store: StateStore;
  tokens: DownloadTokens;
  /** Where answers are published. */
  publish: (topic: string, payload: string) => Promise<void>;
  ttlSeconds: number;
  logger: Logger;
  /** Seconds since the epoch (tests). */
  now?: () => number;
}

/** Issues download tokens to devices. */
export class CredentialService {
  private readonly deps: CredentialServiceDeps;

  constructor(deps: CredentialServiceDeps) {
    this.deps = deps;
  }

  private now(): number {
    return this.deps.now ? this.deps.now() : Math.floor(Date.now() / 1000);
  }

  /** Handles one request; never throws (answers on the rejected topic instead); resolves once answered. */
  handle(msg: InboundMessage): Promise<void> {
    const parsed = parseCredentialsRequestTopic(msg.topic);
    if (!parsed) return Promise.resolve();
    const { deviceId } = parsed;
    const d = this.deps;
    const o = { deviceId, msg, rejectedTopic: credentialsAnswerTopic(deviceId, 'rejected'), what: 'credentials request', refusedLevel: 'info' as const, publish: d.publish, logger: d.logger, nowSeconds: () => this.now() };
    return answerDeviceRequest(o, () => this.answer(deviceId, msg));
  }

  private async answer(deviceId: string, msg: InboundMessage): Promise<void> {
    // the topic ACL lets a device publish only on its own topics; operators may ask for any device
    if (msg.sender.kind === 'device' && msg.sender.id !== deviceId) throw new UpdraftError('FORBIDDEN', 'a device may ask for its own credentials only');
    const body = requestBody(msg.payload, 4096, 'credentials request', true);
    const clientToken = readClientToken(body);
    if (body.jobId !== undefined && typeof body.jobId !== 'string') throw new UpdraftError('BAD_REQUEST', 'jobId must be a string: the job id of the command');
    const device = await this.deps.store.getDevice(deviceId);
    if (!device) throw new UpdraftError('NOT_FOUND', `device ${deviceId} is not registered`);
    if (device.revoked) throw new UpdraftError('FORBIDDEN', 'device revoked');
    const shadow = await this.deps.store.getShadow(deviceId, '');
    const desired = shadow && !shadow.deleted ? shadow.state.desired?.software : undefined;
    if (desired === undefined || desired === null) throw new UpdraftError('NOT_FOUND', 'no update job for this device: nothing to download');
    const sw = parseDesiredSoftware(desired, 'desired.software');
    if (body.jobId !== undefined && body.jobId !== sw.jobId) throw new UpdraftError('CONFLICT', `job ${String(body.jobId)} is not the device's current job (${sw.jobId})`);
    const now = this.now();
    const expiresAt = now + this.deps.ttlSeconds;
    const token = this.deps.tokens.issue({ deviceId, name: sw.name, version: sw.version, sha256: sw.sha256, expiresAt });
    const accepted: CredentialsAccepted = { token, expiresAt, name: sw.name, version: sw.version, jobId: sw.jobId, timestamp: now };
    if (clientToken !== undefined) accepted.clientToken = clientToken;
    this.deps.logger.debug('download credential issued', { deviceId, artifact: `${sw.name}@${sw.version}`, expiresAt });
    await this.deps.publish(credentialsAnswerTopic(deviceId, 'accepted'), JSON.stringify(accepted));
  }
}

/**
 * A MessageBus that hands credentials requests to `service` and every other request to
 * whoever subscribes through it (the replica).
 */
export function withCredentials(bus: MessageBus, service: CredentialService): MessageBus {
  return routeRequests(bus, (msg, next) => (parseCredentialsRequestTopic(msg.topic) ? service.handle(msg) : next(msg)));
}
