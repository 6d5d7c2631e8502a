/**
 * The seam between Updraft and an MQTT broker (STYLE.md habit 2). The embedded
 * implementation (`embedded-broker.ts`) hosts aedes in-process; an external-broker
 * implementation (mqtt.js with shared subscriptions) satisfies the same interface.
 */

/** Who sent a message, as the broker authenticated it. */
export interface Sender {
  /** 'device' for a device client, 'operator' for a trusted service identity, 'internal' for this process. */
  kind: 'device' | 'operator' | 'internal';
  /** The device id or operator name; '' for internal. */
  id: string;
  /**
   * Other AWS IoT thing names this device may act for on the `$aws/things/...` topics
   * (issue 9; its own id always), from its `awsThings` attribute (`aws/thing-access.ts`).
   */
  things?: readonly string[];
}

/** A message on a request topic, handed to the replica. */
export interface InboundMessage {
  topic: string;
  payload: Buffer;
  sender: Sender;
  /**
   * Set on a shadow request that came by the AWS IoT topic family (`aws/shadow-door.ts`): the
   * replica answers it with AWS's code where AWS documents another than Updraft's own
   * protocol (415 for a payload that is not UTF-8).
   */
  family?: 'aws';
}

/**
 * The consumer of requests. It must not block: it queues the work and returns. The promise
 * it may return settles once the request is handled (recorded and answered, or rejected)
 * and never rejects: a bus that can hold a request's acknowledgement until then does (the
 * embedded broker sends the PUBACK of a QoS 1 request then, see `embedded-broker.ts`).
 */
export type RequestHandler = (msg: InboundMessage) => void | Promise<void>;

/** Connect and disconnect of device clients, for the fleet's online view. */
export interface PresenceEvent {
  deviceId: string;
  online: boolean;
}

/** A connection to the MQTT broker, as the replica sees it. */
export interface MessageBus {
  /** Connects or listens. */
  start(): Promise<void>;
  /** Disconnects or closes the broker, releasing sockets and timers. */
  stop(): Promise<void>;
  /** Sets the consumer of shadow requests (`state/+/update|get|delete` and named shadows). */
  onRequest(handler: RequestHandler): void;
  /**
   * Sets the listener for device presence changes: changes only (an external broker's
   * replay of what the bus already knew is not reported again).
   */
  onPresence(handler: (event: PresenceEvent) => void): void;
  /**
   * Whether any subscription matches `topic`, when the bus can tell (the embedded broker
   * sees every subscription; an external one does not: absent means "publish anyway").
   */
  hasSubscribers?(topic: string): boolean;
  /**
   * Publishes an answer; resolves when the broker has taken it. An external broker's
   * connection that is down does not hold the caller: the message is sent when it is back
   * (`bounded-publish.ts`).
   */
  publish(topic: string, payload: string | Buffer, qos?: 0 | 1): Promise<void>;
}

/**
 * A MessageBus over `bus` whose requests pass through `route` first: it handles those it
 * owns and hands the rest to `next`, whoever subscribes through the wrapper (the replica).
 * The rest is `bus`'s own, except what `overrides` replaces.
 */
export function routeRequests(
  bus: MessageBus,
  route: (msg: InboundMessage, next: RequestHandler) => void | Promise<void>,
  overrides: Partial<Pick<MessageBus, 'publish' | 'hasSubscribers'>> = {},
): MessageBus {
  let next: RequestHandler = () => {};
  bus.onRequest((msg) => route(msg, next));
  return {
    start: () => bus.start(),
    stop: () => bus.stop(),
    onRequest: (handler) => {
      next = handler;
    },
    onPresence: (handler) => bus.onPresence(handler),
    ...(bus.hasSubscribers ? { hasSubscribers: (topic: string) => bus.hasSubscribers!(topic) } : {}),
    publish: (topic, payload, qos) => bus.publish(topic, payload, qos),
    ...overrides,
  };
}
