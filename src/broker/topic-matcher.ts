/**
 * The embedded broker's routing table (mqemitter's matcher, which aedes routes every message
 * through), kept so that a connected device costs little in it. mqemitter keeps every filter
 * in a qlobber trie: a device's three filters (`state/<id>/update/delta`, its answers'
 * `state/<id>/+/accepted` and `state/<id>/+/rejected`) made six Maps and their tables, about
 * 1 KB per connected device (the thirty-seventh session's heap snapshots). Here a filter
 * without wildcard is one entry of a Map, found by one hash lookup; a wildcard filter whose
 * first two levels are exact (a device's answers) is kept under those two levels (three for
 * an AWS thing's, `$aws/things/<thing>/...`) with the few others there and matched by hand;
 * only the rest (operators' and tools' filters,
 * aedes's own `$SYS/+/...`) stay in mqemitter's qlobber, which keeps its options.
 *
 * Same answers as qlobber: every value added under every filter matching the topic, as many
 * times as it was added; `remove(filter, value)` takes one, `remove(filter)` all.
 */

/** The part of qlobber's interface mqemitter uses (mqemitter.js: on, removeListener, removeAllListeners, _do). */
export interface Matcher<V> {
  add(filter: string, value: V): unknown;
  remove(filter: string, value?: V): unknown;
  match(topic: string): V[];
}

export class TopicMatcher<V> implements Matcher<V> {
  /** Filters without wildcard, each with its values. */
  private readonly exact = new Map<string, V[]>();
  /** Wildcard filters whose first two levels are exact (a device's answers), by those levels. */
  private readonly prefixed = new PrefixedFilters<V>();
  /** The values of the filters given to `rest`, by filter (what it holds, which qlobber does not say). */
  private readonly inRest = new Map<string, V[]>();
  /** The first levels of the filters in `rest` that start with one (each followed by `/`, or alone), and how many start with a wildcard: a topic under none of them is not looked for there. */
  private restLevels: string[] = [];
  private restLeadingWildcards = 0;
  /** `rest`: the matcher the other filters go to (mqemitter's own qlobber, with its options). */
  constructor(private readonly rest: Matcher<V>) {}

  add(filter: string, value: V): this {
    if (isExact(filter)) {
      const values = this.exact.get(filter);
      if (values) values.push(value);
      else this.exact.set(filter, [value]);
    } else if (prefixed(filter)) {
      this.prefixed.add(filter, value);
    } else {
      this.rest.add(filter, value);
      const values = this.inRest.get(filter);
      if (values) values.push(value);
      else {
        this.inRest.set(filter, [value]);
        this.indexRest();
      }
    }
    return this;
  }

  remove(filter: string, value?: V): this {
    if (isExact(filter)) {
      const values = this.exact.get(filter);
      if (!values) return this;
      if (value === undefined) values.length = 0;
      else {
        const i = values.indexOf(value);
        if (i >= 0) values.splice(i, 1);
      }
      if (values.length === 0) this.exact.delete(filter);
    } else if (prefixed(filter)) {
      this.prefixed.remove(filter, value);
    } else {
      this.rest.remove(filter, value);
      const values = this.inRest.get(filter);
      if (!values) return this;
      if (value === undefined) values.length = 0;
      else {
        const i = values.indexOf(value);
        if (i >= 0) values.splice(i, 1);
      }
      if (values.length === 0) {
        this.inRest.delete(filter);
        this.indexRest();
      }
    }
    return this;
  }

  match(topic: string): V[] {
    const found: V[] = [];
    const values = this.exact.get(topic);
    if (values) for (const v of values) found.push(v);
    this.prefixed.match(topic, found);
    if (this.mayBeInRest(topic)) for (const v of this.rest.match(topic)) found.push(v);
    return found;
  }

  /** Whether a filter in `rest` may match `topic`: one starts with a wildcard, or with the topic's first level. */
  private mayBeInRest(topic: string): boolean {
    if (this.restLeadingWildcards > 0) return true;
    for (const level of this.restLevels) if (topic.startsWith(level) || topic === level.slice(0, -1)) return true;
    return false;
  }

  private indexRest(): void {
    const levels = new Set<string>();
    let leading = 0;
    for (const filter of this.inRest.keys()) {
      const first = filter.split('/', 1)[0]!;
      if (first === '+' || first === '#') leading++;
      else levels.add(`${first}/`);
    }
    this.restLevels = [...levels];
    this.restLeadingWildcards = leading;
  }
}

/**
 * Wildcard filters whose first two levels are exact (`prefixed`: a device's
 * `state/<id>/+/accepted` and `+/rejected`), each with a value, kept by those two levels: a
 * topic is compared, in place, with the few under its own first two. The routing table
 * (TopicMatcher, above) and the replica's count of subscriptions (subscription-interest.ts)
 * both keep a device's answers here.
 *
 * Under `$aws/things` the first two levels are the same for every AWS device: a filter whose
 * third level (the thing) is exact too (`$aws/things/<thing>/shadow/+/accepted`,
 * `.../jobs/#`) is kept by its first three levels (`prefixEnd`), so that a thing's messages
 * are compared with that thing's filters only (kept by two, every `$aws` message was compared
 * with every AWS device's wildcard filters). A filter with a wildcard for the thing
 * (`$aws/things/+/jobs/notify`: operators' tools) stays under `$aws/things`, which a
 * `$aws/things/...` topic is looked up under as well.
 *
 * Kept under a number made from those levels (`prefixKey`), not under the levels as a
 * string: looking a topic up takes no copy of its first levels (every message routed, every
 * answer asked about, took one), and a device's filters keep no string of their levels
 * beside themselves. Prefixes that make the same number share a list, each filter's own
 * levels compared: a few comparisons more, never another answer. A three-level key is odd
 * and a two-level one even, so a topic's two lookups never walk one list twice.
 */
export class PrefixedFilters<V> {
  /** By `prefixKey`: filter, value, filter, value... in the order added. */
  private readonly byKey = new Map<number, (string | V)[]>();

  /** Adds `value` under `filter` (a `prefixed` filter): a filter may hold a value more than once. */
  add(filter: string, value: V): void {
    const key = filterKey(filter);
    const pairs = this.byKey.get(key);
    if (pairs) pairs.push(filter, value);
    else this.byKey.set(key, [filter, value]);
  }

  /** Removes `value` held under `filter` once, or without `value` every value under `filter`. */
  remove(filter: string, value?: V): void {
    const key = filterKey(filter);
    const pairs = this.byKey.get(key);
    if (!pairs) return;
    for (let i = 0; i < pairs.length; i += 2) {
      if (pairs[i] !== filter || (value !== undefined && pairs[i + 1] !== value)) continue;
      pairs.splice(i, 2);
      if (value !== undefined) break;
      i -= 2;
    }
    if (pairs.length === 0) this.byKey.delete(key);
  }

  /** Whether a filter held matches `topic`. Allocates nothing. */
  has(topic: string): boolean {
    if (this.byKey.size === 0) return false;
    const at = prefixEnd(topic);
    if (firstIn(this.byKey.get(prefixKey(topic, at, false)), topic, at, undefined)) return true;
    if (!isAwsThing(topic, at)) return false;
    const thingAt = end(topic, at + 1);
    return firstIn(this.byKey.get(prefixKey(topic, thingAt, true)), topic, thingAt, undefined);
  }

  /** Pushes onto `found` the value of each filter held that matches `topic`, as many times as it is held. */
  match(topic: string, found: V[]): void {
    if (this.byKey.size === 0) return;
    const at = prefixEnd(topic);
    firstIn(this.byKey.get(prefixKey(topic, at, false)), topic, at, found);
    if (!isAwsThing(topic, at)) return;
    const thingAt = end(topic, at + 1);
    firstIn(this.byKey.get(prefixKey(topic, thingAt, true)), topic, thingAt, found);
  }

  /** How many filters a lookup of `topic` compares with it (what `match` and `has` walk): the size of the lists it is looked up under. */
  compared(topic: string): number {
    const at = prefixEnd(topic);
    let n = this.byKey.get(prefixKey(topic, at, false))?.length ?? 0;
    if (isAwsThing(topic, at)) n += this.byKey.get(prefixKey(topic, end(topic, at + 1), true))?.length ?? 0;
    return n / 2;
  }
}

/**
 * Compares `topic`, whose looked-up levels end at `at`, with the filters of `pairs`: without
 * `found`, whether one matches (at the first); with it, pushes the value of each that matches
 * and answers false.
 */
function firstIn<V>(pairs: (string | V)[] | undefined, topic: string, at: number, found: V[] | undefined): boolean {
  if (!pairs) return false;
  for (let i = 0; i < pairs.length; i += 2) {
    if (!matchesPrefixed(pairs[i] as string, topic, at)) continue;
    if (!found) return true;
    found.push(pairs[i + 1] as V);
  }
  return false;
}

/**
 * The number `PrefixedFilters` keeps a filter or looks a topic up under: FNV-1a of the
 * first `end` characters of `s` (its first two levels, or three under `$aws/things`), within
 * V8's small integers (a larger number would be a heap object at each lookup); odd for three
 * levels, even for two.
 */
export function prefixKey(s: string, end: number, thing: boolean): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < end; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return ((h & 0x1fffffff) << 1) | (thing ? 1 : 0);
}

/** The key of a `prefixed` filter: its first three levels when they are `$aws/things/<thing>` (exact) and it goes on past them, else its first two. */
function filterKey(filter: string): number {
  const at = prefixEnd(filter);
  if (isAwsThing(filter, at)) {
    const thingAt = filter.indexOf('/', at + 1);
    if (thingAt >= 0 && !hasWildcard(filter, at + 1, thingAt)) return prefixKey(filter, thingAt, true);
  }
  return prefixKey(filter, at, false);
}

/** Whether the first two levels of `s`, ending at `at`, are `$aws/things` and a third level follows. */
function isAwsThing(s: string, at: number): boolean {
  return at === 11 && at < s.length && s.startsWith('$aws/things');
}

/** Whether `s` holds `+` or `#` from `from` to `to`. */
function hasWildcard(s: string, from: number, to: number): boolean {
  for (let i = from; i < to; i++) {
    const c = s.charCodeAt(i);
    if (c === 43 /* + */ || c === 35 /* # */) return true;
  }
  return false;
}

/**
 * Whether the `prefixed` filter `filter` matches `topic`, whose looked-up levels end at
 * `at`: the same first levels (compared from their end, where device ids differ), then the
 * rest (`matchesAfter`).
 */
function matchesPrefixed(filter: string, topic: string, at: number): boolean {
  if (filter.charCodeAt(at) !== 47 /* / */) return false;
  for (let i = at - 1; i >= 0; i--) if (filter.charCodeAt(i) !== topic.charCodeAt(i)) return false;
  return matchesAfter(filter, topic, at);
}

/**
 * `matches` for a filter and a topic whose first `at` characters are the same two levels
 * (`prefixed`): the levels after them compared in place, without splitting either (this
 * runs for every message routed to a device's answers).
 */
function matchesAfter(filter: string, topic: string, at: number): boolean {
  let f = at; // at the `/` before the filter's next level (the filter goes on past its prefix)
  let t = at; // at the `/` before the topic's next level, or its end
  for (;;) {
    if (f >= filter.length) return t >= topic.length;
    const fEnd = end(filter, f + 1);
    if (fEnd === f + 2 && filter.charCodeAt(f + 1) === 35 /* # */) return true; // also the level above
    if (t >= topic.length) return false;
    const tEnd = end(topic, t + 1);
    if (!(fEnd === f + 2 && filter.charCodeAt(f + 1) === 43) /* + */) {
      if (fEnd - f !== tEnd - t) return false;
      for (let i = 1; i < fEnd - f; i++) if (filter.charCodeAt(f + i) !== topic.charCodeAt(t + i)) return false;
    }
    f = fEnd;
    t = tEnd;
  }
}

/** Where the level starting at `from` ends: its `/`, or the end of `s`. */
function end(s: string, from: number): number {
  const i = s.indexOf('/', from);
  return i < 0 ? s.length : i;
}

/**
 * Whether the MQTT filter `filter` matches `topic`, as aedes's mqemitter does (qlobber with
 * empty levels matched by `+`; `a/#` matches `a`): a filter starting with a wildcard matches
 * no `$` topic [MQTT-4.7.2-1].
 */
export function matches(filter: string, topic: string): boolean {
  if ((filter.startsWith('#') || filter.startsWith('+')) && topic.startsWith('$')) return false;
  const f = filter.split('/');
  const t = topic.split('/');
  for (let i = 0; i < f.length; i++) {
    if (f[i] === '#') return true;
    if (i >= t.length || (f[i] !== '+' && f[i] !== t[i])) return false;
  }
  return f.length === t.length;
}

/** A filter without wildcard: it matches one topic, itself. */
export function isExact(filter: string): boolean {
  return !filter.includes('+') && !filter.includes('#');
}

/** Where a topic's or filter's first two levels (`state/<id>`) end: at its second `/`, or its end with fewer. */
function prefixEnd(topicOrFilter: string): number {
  const second = topicOrFilter.indexOf('/', topicOrFilter.indexOf('/') + 1);
  return second < 0 ? topicOrFilter.length : second;
}

/**
 * A wildcard filter of three levels or more whose first two hold no wildcard: every topic it
 * matches has the same first two levels (`a/b/#` also matches `a/b`, whose first two levels
 * are all of it), so it is found under them.
 */
export function prefixed(filter: string): boolean {
  const end = prefixEnd(filter);
  return end < filter.length && isExact(filter.slice(0, end));
}
