/**
 * The answering of a device's request to a service beside the replica (temporary download
 * credentials, certificate renewal): whatever goes wrong is answered on the request's
 * `.../rejected` topic with its code and message, echoing the request's clientToken, and
 * logged (an error for a fault of ours, `refusedLevel` for a refusal). Never rejects: the bus
 * hands requests over and forgets them.
 */
import { UpdraftError, asUpdraftError, publicMessage } from '../errors.ts';
import { requireJsonObject, type JsonObject } from '../protocol/json.ts';
import { PAYLOAD_JSON_MESSAGES, salvageClientToken, type Rejection } from '../protocol/shadow-messages.ts';
import type { Logger } from '../util/logger.ts';
import type { InboundMessage } from './message-bus.ts';

/** Runs `answer`; on a failure, publishes the rejection on `rejectedTopic`. */
export function answerDeviceRequest(
  o: {
    deviceId: string;
    msg: InboundMessage;
    rejectedTopic: string;
    /** What is asked, for the log: "credentials request", "certificate renewal". */
    what: string;
    refusedLevel: 'info' | 'warn';
    /** True for a refusal the caller says in its own (throttled) line: logged here at debug only. */
    quiet?: (e: UpdraftError) => boolean;
    publish: (topic: string, payload: string) => Promise<void>;
    logger: Logger;
    nowSeconds: () => number;
  },
  answer: () => Promise<void>,
): Promise<void> {
  return answer().catch(async (err: unknown) => {
    const e = asUpdraftError(err);
    if (e.status >= 500) o.logger.error(`${o.what} failed`, { deviceId: o.deviceId, error: e.message });
    else o.logger[o.quiet?.(e) ? 'debug' : o.refusedLevel](`${o.what} refused`, { deviceId: o.deviceId, reason: e.message });
    const rejection: Rejection = { code: e.status, message: publicMessage(e), timestamp: o.nowSeconds() };
    const clientToken = salvageClientToken(o.msg.payload);
    if (clientToken !== undefined) rejection.clientToken = clientToken;
    await o.publish(o.rejectedTopic, JSON.stringify(rejection)).catch(() => {});
  });
}

/** The JSON object of a request's payload, at most `maxBytes` (an empty payload is `{}` when `emptyIsObject`); TOO_LARGE or BAD_REQUEST otherwise. */
export function requestBody(payload: Buffer, maxBytes: number, what: string, emptyIsObject = false): JsonObject {
  if (payload.length === 0 && emptyIsObject) return {};
  if (payload.length > maxBytes) throw new UpdraftError('TOO_LARGE', `${what} larger than ${maxBytes} bytes`);
  return requireJsonObject(payload, PAYLOAD_JSON_MESSAGES);
}
