/**
 * The AWS IoT Device Shadow door (issue 9): `$aws/things/{thing}/shadow/{update,get,delete}`
 * and `.../shadow/name/{shadowName}/...` requests go to the same replica as
 * `state/{id}/...` (one store, one set of rules: a shadow written through one family is the
 * same shadow through the other), and the replica's answers are mirrored onto the AWS
 * topics for things that use that family. The message shapes, codes and messages are the
 * replica's, which follow the AWS developer guide word for word
 * (https://docs.aws.amazon.com/iot/latest/developerguide/device-shadow-mqtt.html).
 */
import type { InboundMessage } from '../broker/message-bus.ts';
import { awsMirrorOfAnswer, parseAwsShadowRequest } from '../protocol/aws-topics.ts';
import { requestTopic, topicDeviceId } from '../protocol/topics.ts';
import type { AwsThings } from './aws-things.ts';
import { mayActFor } from './thing-access.ts';

/** Translates AWS shadow requests for the replica and names the AWS twin of its answers. */
export class AwsShadowDoor {
  private readonly things: AwsThings;

  constructor(deps: { things: AwsThings }) {
    this.things = deps.things;
  }

  /**
   * The replica's request for an AWS shadow request, or undefined when `msg` is not one (or
   * its sender may not act for the thing; the broker ACL refuses that earlier).
   */
  translate(msg: InboundMessage): InboundMessage | undefined {
    const req = parseAwsShadowRequest(msg.topic);
    if (!req || !mayActFor(msg.sender, req.deviceId)) return undefined;
    this.things.mark(req.deviceId);
    return { topic: requestTopic(req, req.op), payload: msg.payload, sender: msg.sender, family: 'aws' };
  }

  /** The AWS topic an answer published on `topic` must also go to, if its thing uses the family. */
  mirrorOf(topic: string): string | undefined {
    const id = topicDeviceId(topic);
    if (id === undefined || !this.things.has(id)) return undefined;
    return awsMirrorOfAnswer(topic);
  }
}
