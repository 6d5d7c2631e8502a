/**
 * Which topics anyone is subscribed to, so that answers nobody can receive are not built
 * or sent. The replica publishes `update/documents` after every shadow update (the shadow
 * contract) but no device agent subscribes to it: only dashboards, rules and operator tools
 * do. On the embedded broker, where every subscription is seen, the replica skips it when
 * no subscription matches, which saves a message, a JSON document of twice the shadow's
 * size and its garbage for every device report. An external broker does not tell: there,
 * everything is published.
 *
 * Counted per client id, so a client that subscribes twice, or comes back with a
 * persistent session, is counted once; a clean session's filters go when it disconnects.
 */

/** True when the MQTT topic filter `filter` matches `topic` (MQTT 3.1.1 §4.7). */
export function topicMatches(filter: string, topic: string): boolean {
  // a filter starting with a wildcard does not match topics starting with '$' [MQTT-4.7.2-1]
  if (topic.startsWith('$') && (filter.startsWith('+') || filter.startsWith('#'))) return false;
  const f = filter.split('/');
  const t = topic.split('/');
  for (let i = 0; i < f.length; i++) {
    if (f[i] === '#') return true;
    if (i >= t.length) return false;
    if (f[i] !== '+' && f[i] !== t[i]) return false;
  }
  return f.length === t.length;
}

/** The subscriptions of the clients of one broker. */
export class SubscriptionInterest {
  private readonly byClient = new Map<string, Set<string>>();
  private readonly exact = new Map<string, number>();
  private readonly wildcards = new Map<string, number>();

  /** A client subscribed to `filter`. */
  add(clientId: string, filter: string): void {
    let mine = this.byClient.get(clientId);
    if (!mine) this.byClient.set(clientId, (mine = new Set()));
    if (mine.has(filter)) return;
    mine.add(filter);
    const counts = isWildcard(filter) ? this.wildcards : this.exact;
    counts.set(filter, (counts.get(filter) ?? 0) + 1);
  }

  /** A client unsubscribed from `filter`. */
  remove(clientId: string, filter: string): void {
    const mine = this.byClient.get(clientId);
    if (!mine?.delete(filter)) return;
    if (mine.size === 0) this.byClient.delete(clientId);
    const counts = isWildcard(filter) ? this.wildcards : this.exact;
    const n = (counts.get(filter) ?? 1) - 1;
    if (n <= 0) counts.delete(filter);
    else counts.set(filter, n);
  }

  /** A client's session ended (clean session): all its filters go. */
  forget(clientId: string): void {
    for (const filter of [...(this.byClient.get(clientId) ?? [])]) this.remove(clientId, filter);
  }

  /** True when some subscription matches `topic`. */
  has(topic: string): boolean {
    if (this.exact.has(topic)) return true;
    for (const filter of this.wildcards.keys()) if (topicMatches(filter, topic)) return true;
    return false;
  }
}

function isWildcard(filter: string): boolean {
  return filter.includes('+') || filter.includes('#');
}
