/**
 * Per-device topic authorization, deny by default (DESIGN.md §6): a device may publish
 * requests only on its own `state/{id}/...` request topics (shadow, credentials, certificate
 * renewal and job logs), and its
 * own presence (`state/{id}/presence`), and subscribe only under its own `state/{id}/`.
 * Operators may use any topic except the broker's `$SYS`.
 *
 * The AWS IoT families (issue 9): a device may also publish shadow and jobs requests on
 * `$aws/things/{thing}/...` and subscribe under `$aws/things/{thing}/shadow/` and
 * `.../jobs/`, for the things it may act for (its own id, plus its `awsThings` attribute:
 * `aws/thing-access.ts`). Never on answer topics: those come from Updraft.
 */
import { mayActFor } from '../aws/thing-access.ts';
import { AWS_THINGS_PREFIX, awsThingOf, parseAwsJobsRequest, parseAwsShadowRequest } from '../protocol/aws-topics.ts';
import { parseDeviceRequestTopic, parsePresenceTopic } from '../protocol/topics.ts';
import type { Sender } from './message-bus.ts';

/** True when `sender` may publish on `topic`. */
export function mayPublish(sender: Sender, topic: string): boolean {
  if (sender.kind === 'internal') return true;
  if (sender.kind === 'operator') return !topic.startsWith('$SYS');
  if (topic.startsWith(AWS_THINGS_PREFIX)) {
    const req = parseAwsShadowRequest(topic) ?? parseAwsJobsRequest(topic);
    const thing = req && ('deviceId' in req ? req.deviceId : req.thing);
    return thing !== undefined && mayActFor(sender, thing);
  }
  // devices publish requests (and their presence) only: answers (accepted, delta, ...)
  // come from the replica
  return (parseDeviceRequestTopic(topic)?.deviceId ?? parsePresenceTopic(topic)) === sender.id;
}

/** True when `sender` may subscribe to the topic filter `filter`. */
export function maySubscribe(sender: Sender, filter: string): boolean {
  if (sender.kind !== 'device') return sender.kind === 'internal' || !filter.startsWith('$SYS');
  if (filter.startsWith(AWS_THINGS_PREFIX)) {
    // the thing level must be literal, and the family one of the two Updraft answers
    const thing = awsThingOf(filter);
    if (thing === undefined || !mayActFor(sender, thing)) return false;
    const rest = filter.slice(AWS_THINGS_PREFIX.length + thing.length);
    return rest.startsWith('/shadow/') || rest.startsWith('/jobs/');
  }
  // the device id level is literal in the prefix, so a wildcard there cannot match
  return filter.startsWith(`state/${sender.id}/`);
}
