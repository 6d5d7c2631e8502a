/**
 * One copy of each message per connection, without aedes's loss of messages that overtook
 * each other (aedes#994, still in aedes 1.2).
 *
 * aedes numbers each message as it is published (`brokerCounter`) and, per connection, drops
 * any message numbered at or below the highest one already forwarded there (`dedupe` in
 * lib/client.js): meant for the copies a cluster or overlapping subscriptions deliver, it
 * assumes messages reach a connection in the order they were numbered. They do not: a QoS 1
 * or 2 message waits for the session store (aedes's `enqueueOffline`, a promise) before it
 * is delivered, a QoS 0 one does not. So a QoS 0 message published just after a QoS 1 one
 * reached the client first, and the QoS 1 one was then dropped as a "duplicate", silently:
 * a device subscribed to `$aws/things/{thing}/jobs/#` that sent `shadow/get` and `jobs/get`
 * in one write got the echo of its own `shadow/get` (QoS 0) ahead of the `jobs/get/accepted`
 * answer (QoS 1), which never came, though the request had been carried out (a
 * `jobs/start-next` had moved the execution to IN_PROGRESS).
 *
 * Here aedes's high-water mark is switched off and a message is dropped only when it is the
 * very message last forwarded to that connection: the copies overlapping subscriptions make
 * (MQTT 3.1.1 §3.3.5 lets the server send one) come one after the other, in the same
 * synchronous round of mqemitter over the matching subscriptions, so comparing with the last
 * one catches them all. This broker is never clustered: no other broker's copies exist.
 */
import type { Client, PublishPacket } from 'aedes';
import { UpdraftError } from '../errors.ts';

/** A message as aedes numbers it. */
type NumberedPacket = PublishPacket & { brokerId?: string | null; brokerCounter?: number };

/** Forwards each message once per connection, whatever order messages arrive in. */
export class ForwardOnce {
  /** The number of the message last forwarded to each connection. */
  private readonly last = new WeakMap<Client, number>();
  private readonly brokerId: string;

  constructor(brokerId: string) {
    this.brokerId = brokerId;
  }

  /**
   * Switches aedes's own filter off for `client` (a connection just handed to aedes, before
   * it can subscribe): its record of the highest number forwarded always reads as none.
   */
  adopt(client: object): void {
    const duplicates = (client as { duplicates?: unknown }).duplicates;
    // an aedes upgrade that moved the filter would bring the loss back unnoticed
    if (typeof duplicates !== 'object' || duplicates === null) throw new UpdraftError('INTERNAL', "aedes client without its duplicates record: messages that overtake each other would be dropped (aedes#994)");
    Object.defineProperty(duplicates, this.brokerId, { get: () => undefined, set: () => {}, enumerable: false, configurable: true });
  }

  /** False when `packet` is the message just forwarded to `client` (another subscription's copy). */
  first(client: Client, packet: PublishPacket): boolean {
    const { brokerId, brokerCounter } = packet as NumberedPacket;
    // retained messages sent on SUBSCRIBE carry no broker id: aedes never filtered them
    if (!brokerId || brokerCounter === undefined) return true;
    if (this.last.get(client) === brokerCounter) return false;
    this.last.set(client, brokerCounter);
    return true;
  }
}
