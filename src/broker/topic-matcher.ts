/**
 * The embedded broker's routing table (mqemitter's matcher, which aedes routes every message
 * through), kept so that a connected device costs little in it. mqemitter keeps every filter
 * in a qlobber trie: a device's three filters (`state/<id>/update/delta`, its answers'
 * `state/<id>/+/accepted` and `state/<id>/+/rejected`) made six Maps and their tables, about
 * 1 KB per connected device (the thirty-seventh session's heap snapshots). Here a filter
 * without wildcard is one entry of a Map, found by one hash lookup; a wildcard filter whose
 * first two levels are exact (a device's answers) is kept under those two levels with the
 * few others there and matched by hand; only the rest (operators' and tools' filters,
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
  /** Wildcard filters whose first two levels are exact, by those levels: filter, value, filter, value... */
  private readonly prefixed = new Map<string, (string | V)[]>();
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
      const prefix = prefixOf(filter);
      const pairs = this.prefixed.get(prefix);
      if (pairs) pairs.push(filter, value);
      else this.prefixed.set(prefix, [filter, value]);
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
      const prefix = prefixOf(filter);
      const pairs = this.prefixed.get(prefix);
      if (!pairs) return this;
      for (let i = 0; i < pairs.length; i += 2) {
        if (pairs[i] !== filter || (value !== undefined && pairs[i + 1] !== value)) continue;
        pairs.splice(i, 2);
        if (value !== undefined) break;
        i -= 2;
      }
      if (pairs.length === 0) this.prefixed.delete(prefix);
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
    if (this.prefixed.size > 0) {
      const prefix = prefixOf(topic);
      const pairs = this.prefixed.get(prefix);
      if (pairs) for (let i = 0; i < pairs.length; i += 2) if (matchesAfter(pairs[i] as string, topic, prefix.length)) found.push(pairs[i + 1] as V);
    }
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
 * `matches` for a filter and a topic whose first `at` characters are the same two levels
 * (`prefixed`): the levels after them compared in place, without splitting either (this
 * runs for every message routed to a device's answers).
 */
export function matchesAfter(filter: string, topic: string, at: number): boolean {
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

/** A topic's or filter's first two levels (`state/<id>`), or all of it with fewer. */
export function prefixOf(topicOrFilter: string): string {
  const second = topicOrFilter.indexOf('/', topicOrFilter.indexOf('/') + 1);
  return second < 0 ? topicOrFilter : topicOrFilter.slice(0, second);
}

/**
 * A wildcard filter of three levels or more whose first two hold no wildcard: every topic it
 * matches has the same first two levels (`a/b/#` also matches `a/b`, whose first two levels
 * are all of it), so it is found under them.
 */
export function prefixed(filter: string): boolean {
  const prefix = prefixOf(filter);
  return prefix.length < filter.length && isExact(prefix);
}
