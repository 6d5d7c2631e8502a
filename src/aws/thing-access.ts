/**
 * Which AWS IoT things a device may act for on `$aws/things/{thing}/...` (issue 9). Deny by
 * default: a device acts for its own thing (thing name = device id) only. An operator widens
 * that per device with the registry attribute `awsThings`, a comma-separated list of thing
 * names (e.g. a gateway whose certificate serves several things), the way an AWS IoT policy
 * may list several `thing/...` resources for one certificate.
 */
import type { Sender } from '../broker/message-bus.ts';
import { isValidId } from '../protocol/topics.ts';

/** The registry attribute that lists the extra things a device may act for. */
export const AWS_THINGS_ATTRIBUTE = 'awsThings';

/** The extra thing names in a device's attributes (invalid names are ignored). */
export function thingsFromAttributes(attributes: Record<string, string | number | boolean>): string[] {
  const raw = attributes[AWS_THINGS_ATTRIBUTE];
  // the CLI types `--attr awsThings=42` as a number
  if (typeof raw !== 'string' && typeof raw !== 'number') return [];
  return String(raw).split(',').map((t) => t.trim()).filter((t) => t !== '' && isValidId(t));
}

/** True when `sender` may act for `thing`: a device for itself and its listed things; operators and the server for all. */
export function mayActFor(sender: Sender, thing: string): boolean {
  if (sender.kind !== 'device') return true;
  return sender.id === thing || (sender.things?.includes(thing) ?? false);
}
