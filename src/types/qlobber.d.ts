/** The part of qlobber (no published types) that broker/subscription-interest.ts uses. */
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
}
