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
 * Matching is a trie lookup, not a scan: thousands of devices each subscribed to
 * `state/<id>/#` cost nothing per publish. Filters without wildcards (what agents subscribe
 * to) are kept in a set instead: an answer to a device is found with one hash lookup, and
 * the tries, which split the topic and walk it, hold only the few wildcard filters of
 * operators and tools, and are not walked at all while they are empty (the usual case: the
 * dashboard reads server-sent events, not MQTT). Walking empty tries for the answers nobody
 * receives (`documents`, the `$aws` twins) took 4% of the server in a fleet update.
 *
 * A device's own wildcard filters (`state/<id>/+/accepted`, `.../+/rejected`: its answers)
 * are kept by their first two levels, which hold no wildcard (three for an AWS thing's,
 * `$aws/things/<thing>/...`), and matched by hand against the few under a topic's own
 * (topic-matcher.ts's PrefixedFilters, which the routing table uses too): in the trie they
 * cost four Maps and their tables per connected device (~600 bytes, the thirty-seventh
 * session's heap snapshots).
 */
import { QlobberTrue } from 'qlobber';
import { isExact, PrefixedFilters, prefixed } from './topic-matcher.ts';

/** MQTT topic filters in a trie (qlobber, what aedes itself matches with). */
const trie = () => new QlobberTrue({ separator: '/', wildcard_one: '+', wildcard_some: '#', match_empty_levels: true });

/** The subscriptions of the clients of one broker. */
export class SubscriptionInterest {
  private readonly byClient = new Map<string, Set<string>>();
  /** How many clients hold each filter: a filter enters the tries at 1 and leaves at 0. */
  private readonly counts = new Map<string, number>();
  /** Filters without a wildcard: they match exactly one topic, themselves. */
  private readonly exact = new Set<string>();
  /** Wildcard filters whose first two levels are exact, by those two levels (topic-matcher.ts, as the routing table keeps them). */
  private readonly byPrefix = new PrefixedFilters<true>();
  /** How many filters the tries hold. */
  private wildcards = 0;
  /** Filters that start with a wildcard, which never match `$` topics [MQTT-4.7.2-1]. */
  private readonly leadingWildcard = trie();
  private readonly others = trie();

  /** A client subscribed to `filter`. */
  add(clientId: string, filter: string): void {
    let mine = this.byClient.get(clientId);
    if (!mine) this.byClient.set(clientId, (mine = new Set()));
    if (mine.has(filter)) return;
    mine.add(filter);
    const n = (this.counts.get(filter) ?? 0) + 1;
    this.counts.set(filter, n);
    if (n === 1) {
      if (isExact(filter)) this.exact.add(filter);
      else if (prefixed(filter)) this.byPrefix.add(filter, true);
      else {
        this.trieOf(filter).add(filter);
        this.wildcards++;
      }
    }
  }

  /** A client unsubscribed from `filter`. */
  remove(clientId: string, filter: string): void {
    const mine = this.byClient.get(clientId);
    if (!mine?.delete(filter)) return;
    if (mine.size === 0) this.byClient.delete(clientId);
    const n = (this.counts.get(filter) ?? 1) - 1;
    if (n > 0) return void this.counts.set(filter, n);
    this.counts.delete(filter);
    if (isExact(filter)) this.exact.delete(filter);
    else if (prefixed(filter)) this.byPrefix.remove(filter);
    else {
      this.trieOf(filter).remove(filter);
      this.wildcards--;
    }
  }

  /** A client's session ended (clean session): all its filters go. */
  forget(clientId: string): void {
    for (const filter of [...(this.byClient.get(clientId) ?? [])]) this.remove(clientId, filter);
  }

  /** True when some subscription matches `topic`. */
  has(topic: string): boolean {
    if (this.exact.has(topic)) return true;
    if (this.byPrefix.has(topic)) return true;
    if (this.wildcards === 0) return false;
    return this.others.test(topic) || (!topic.startsWith('$') && this.leadingWildcard.test(topic));
  }

  private trieOf(filter: string) {
    return filter.startsWith('+') || filter.startsWith('#') ? this.leadingWildcard : this.others;
  }
}
