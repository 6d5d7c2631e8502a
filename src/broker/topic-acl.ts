/**
 * Per-device topic authorization, deny by default (DESIGN.md §6): a device may publish
 * requests only on its own `state/{id}/...` request topics (shadow and credentials) and subscribe only under its
 * own `state/{id}/`. Operators may use any topic except the broker's `$SYS`.
 */
import { parseCredentialsRequestTopic, parseRequestTopic } from '../protocol/topics.ts';
import type { Sender } from './message-bus.ts';

/** True when `sender` may publish on `topic`. */
export function mayPublish(sender: Sender, topic: string): boolean {
  if (sender.kind === 'internal') return true;
  if (sender.kind === 'operator') return !topic.startsWith('$SYS');
  // devices publish requests only: answers (accepted, delta, ...) come from the replica
  return (parseRequestTopic(topic) ?? parseCredentialsRequestTopic(topic))?.deviceId === sender.id;
}

/** True when `sender` may subscribe to the topic filter `filter`. */
export function maySubscribe(sender: Sender, filter: string): boolean {
  if (sender.kind !== 'device') return sender.kind === 'internal' || !filter.startsWith('$SYS');
  // the device id level is literal in the prefix, so a wildcard there cannot match
  return filter.startsWith(`state/${sender.id}/`);
}
