/**
 * Device presence over any MQTT broker: the Last Will pattern. An external broker
 * (Mosquitto, EMQX, ...) does not tell its subscribers who connects, so the agent says it
 * itself: on every connect it publishes `{"online":true}` on `state/{id}/presence`,
 * retained, and it connects with a Will on the same topic that clears it (an empty retained
 * message), which the broker publishes when the connection ends without a DISCONNECT
 * packet (a lost network, a crash, or the agent's own stop, which closes the socket).
 *
 * So the broker holds a retained message for each device online now, and none for the
 * others (about 1.2 KB of Mosquitto's memory each, measured: a fleet's offline devices cost
 * nothing). An Updraft instance that (re)subscribes gets the devices online now from the
 * retained messages, and takes every device it knew online but does not hear of as gone
 * (`external-broker.ts`).
 *
 * The embedded broker sees connections itself; there these messages are accepted and
 * discarded (`embedded-broker.ts`).
 */
import { isJsonObject } from './json.ts';

/** The payload on `state/{id}/presence` while the device is online. */
export interface PresenceMessage {
  online: boolean;
}

/** What the agent publishes, retained, at every connect. */
export const PRESENCE_ONLINE = JSON.stringify({ online: true } satisfies PresenceMessage);

/** The agent's Will: an empty retained message, which clears its online message. */
export const PRESENCE_WILL = Buffer.alloc(0);

/**
 * Whether a presence payload says online: an empty payload (the Will, a retained message
 * cleared) and `{"online":false}` say offline; undefined for anything malformed, which the
 * reader ignores.
 */
export function parsePresence(payload: Buffer): boolean | undefined {
  if (payload.length === 0) return false;
  if (payload.length > 256) return undefined;
  try {
    const msg: unknown = JSON.parse(payload.toString('utf8'));
    return isJsonObject(msg) && typeof msg.online === 'boolean' ? msg.online : undefined;
  } catch {
    return undefined;
  }
}
