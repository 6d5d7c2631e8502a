/**
 * What one device connection may hold in subscriptions on the embedded broker. The topic ACL
 * lets a device subscribe to anything under its own `state/{id}/` (and its `$aws/things/`
 * families), which is any number of filters of any length: 100,000 filters of 200 bytes
 * took a QA pass's server from 111 MB to 294 MB, and dropping that connection stalled the
 * event loop for seconds while aedes removed them one by one. So a device connection holds
 * at most `max` distinct filters (`mqtt.maxSubscriptions`), and a filter no protocol topic
 * could match (too long, too many levels) is refused whatever the count. Operators are not
 * limited (the caller asks only for devices).
 *
 * Counted per connection, by filter: subscribing again to a filter it holds takes no new
 * place (MQTT 3.1.1 [MQTT-3.8.4-3]: it replaces the existing subscription), an UNSUBSCRIBE
 * frees one, and a new connection starts from nothing (a persistent session's filters are
 * authorized, and so counted, again when it is restored).
 */

/**
 * Longest filter that can match a protocol topic, in bytes. The longest topic is a named
 * shadow's answer on the AWS family, `$aws/things/{thing}/shadow/name/{name}/update/documents`
 * with a thing and a name of 128 characters (298 bytes); a filter is at most two bytes
 * longer (a trailing `/#`). Rounded up generously.
 */
export const MAX_FILTER_BYTES = 512;

/**
 * Most levels a filter that can match a protocol topic has, a trailing `#` not counted (it
 * also matches its parent level [MQTT-4.7.1-2]): the same `$aws/.../shadow/name/{name}/update/accepted` has 8.
 */
export const MAX_FILTER_LEVELS = 8;

/** Why a device's filter is refused, for the log; undefined when it is granted. */
export type QuotaRefusal = 'too many subscriptions' | 'filter too long' | 'filter too deep';

/** Why `filter` can match no protocol topic, or undefined when it can. */
export function filterShapeRefusal(filter: string): QuotaRefusal | undefined {
  if (filter.length > MAX_FILTER_BYTES || Buffer.byteLength(filter) > MAX_FILTER_BYTES) return 'filter too long';
  let levels = 1;
  for (let i = filter.indexOf('/'); i !== -1; i = filter.indexOf('/', i + 1)) levels++;
  if (filter.endsWith('/#')) levels--;
  return levels > MAX_FILTER_LEVELS ? 'filter too deep' : undefined;
}

/** The filters each device connection holds, bounded. */
export class SubscriptionQuota<C extends object> {
  private readonly max: number;
  private readonly held = new WeakMap<C, Set<string>>();
  /** Connections whose refusal was logged: the first is enough (a flood would flood the log). */
  private readonly warned = new WeakSet<C>();

  /** `max`: distinct filters one connection may hold. */
  constructor(max: number) {
    this.max = max;
  }

  /** Takes a place for `filter` on `client`, or says why it is refused. */
  admit(client: C, filter: string): QuotaRefusal | undefined {
    let mine = this.held.get(client);
    if (mine?.has(filter)) return undefined;
    const shape = filterShapeRefusal(filter);
    if (shape) return shape;
    if (!mine) this.held.set(client, (mine = new Set()));
    if (mine.size >= this.max) return 'too many subscriptions';
    mine.add(filter);
    return undefined;
  }

  /** True when `client` holds `filter` (it was granted and not released). */
  holds(client: C, filter: string): boolean {
    return this.held.get(client)?.has(filter) ?? false;
  }

  /** `client` unsubscribed from `filter` (or its session ended): its place is free. */
  release(client: C, filter: string): void {
    this.held.get(client)?.delete(filter);
  }

  /** True the first time it is asked for `client`: log its refusals once per connection. */
  firstRefusal(client: C): boolean {
    if (this.warned.has(client)) return false;
    this.warned.add(client);
    return true;
  }
}
