/**
 * Puts the AWS doors in front of the replica (issue 9): a MessageBus wrapper that hands
 * `$aws/things/{thing}/jobs/...` requests to the jobs door, turns
 * `$aws/things/{thing}/shadow/...` requests into the replica's own requests, and publishes
 * each replica answer a second time on its `$aws` topic when the thing uses that family.
 * Everything else passes through untouched, so devices that never use the family cost
 * nothing more.
 */
import { routeRequests, type MessageBus, type RequestHandler } from '../broker/message-bus.ts';
import { AWS_THINGS_PREFIX } from '../protocol/aws-topics.ts';
import type { AwsShadowDoor } from './shadow-door.ts';

/** `bus` with the AWS shadow door and the jobs door's handler (`AwsJobsDoor.handle`) in front of whoever subscribes through it (the replica). */
export function withAwsDoors(bus: MessageBus, doors: { shadow: AwsShadowDoor; jobs: RequestHandler }): MessageBus {
  return routeRequests(
    bus,
    (msg, next) => {
      if (!msg.topic.startsWith(AWS_THINGS_PREFIX)) return next(msg);
      const shadowRequest = doors.shadow.translate(msg);
      if (shadowRequest) return next(shadowRequest);
      return doors.jobs(msg);
    },
    {
      // an answer is wanted when its own topic or its $aws mirror has a subscriber
      ...(bus.hasSubscribers
        ? {
            hasSubscribers: (topic: string) => {
              if (bus.hasSubscribers!(topic)) return true;
              const mirror = doors.shadow.mirrorOf(topic);
              return mirror !== undefined && bus.hasSubscribers!(mirror);
            },
          }
        : {}),
      publish: async (topic, payload, qos) => {
        const mirror = doors.shadow.mirrorOf(topic);
        if (!mirror) return bus.publish(topic, payload, qos);
        // a thing using the AWS family: each twin only if someone listens (when the bus can tell)
        const wanted = (t: string) => bus.hasSubscribers?.(t) !== false;
        if (wanted(topic)) await bus.publish(topic, payload, qos);
        if (wanted(mirror)) await bus.publish(mirror, payload, qos);
      },
    },
  );
}
