/** The part of qlobber (no published types) that broker/subscription-interest.ts uses, and the tests of broker/topic-matcher.ts (mqemitter's matcher). */
declare module 'qlobber' {
  interface QlobberOptions {
    separator?: string;
    wildcard_one?: string;
    wildcard_some?: string;
    match_empty_levels?: boolean;
  }
  /** A topic trie that only records whether a filter is present. */
  export class QlobberTrue {
    constructor(options?: QlobberOptions);
    add(filter: string): this;
    remove(filter: string): this;
    /** True when some added filter matches `topic`. */
    test(topic: string): boolean;
  }
  /** A topic trie of values: `match` gives every value added under every filter matching the topic. */
  export class Qlobber<V = unknown> {
    constructor(options?: QlobberOptions);
    add(filter: string, value: V): this;
    remove(filter: string, value?: V): this;
    match(topic: string): V[];
  }
}
