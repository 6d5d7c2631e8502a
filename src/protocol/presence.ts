/**
 * Device presence over any MQTT broker: the Last Will pattern. An external broker
 * (Mosquitto, EMQX, ...) does not tell its subscribers who connects, so the agent says it
 * itself: on every connect it publishes `{"online":true}` on `state/{id}/presence`,
 * retained, and it connects with a retained `{"online":false}` Will on the same topic,
 * which the broker publishes when the connection ends without a DISCONNECT packet (a lost
 * network, a crash, or the agent's own stop, which closes the socket). Retained, so an
 * Updraft instance that (re)subscribes learns every device's last state at once.
 *
 * The embedded broker sees connections itself; there these messages are accepted and
 * discarded (`embedded-broker.ts`).
 */
import { isJsonObject } from './json.ts';

/** The payload on `state/{id}/presence`. */
export interface PresenceMessage {
  online: boolean;
}

/** The payloads the agent publishes (and leaves as its Will), built once. */
export const PRESENCE_ONLINE = JSON.stringify({ online: true } satisfies PresenceMessage);
export const PRESENCE_OFFLINE = JSON.stringify({ online: false } satisfies PresenceMessage);

/**
 * Whether a presence payload says online; undefined for an empty payload (a retained
 * message cleared) or anything malformed, which the reader ignores.
 */
export function parsePresence(payload: Buffer): boolean | undefined {
  if (payload.length === 0 || payload.length > 256) return undefined;
  try {
    const msg: unknown = JSON.parse(payload.toString('utf8'));
    return isJsonObject(msg) && typeof msg.online === 'boolean' ? msg.online : undefined;
  } catch {
    return undefined;
  }
}
