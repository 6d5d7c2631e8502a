/**
 * The things that use the AWS IoT topic families (issue 9). Answers are mirrored onto
 * `$aws/things/...` only for them, so a device that never uses the family costs no extra
 * message (issue 7 counts messages per update). A thing joins when it subscribes to one of
 * its `$aws` topics (embedded broker) or sends an `$aws` request (any broker: an external
 * broker does not tell Updraft about subscriptions, see docs/aws-compatibility.md).
 * Kept in memory, bounded: after a restart a device is known again at its next subscribe or
 * request, as every SDK client subscribes again when it reconnects. With several instances,
 * a thing new to one instance is announced to the others (`onNew`, relayed as the
 * `aws.thing` event), so a delta committed on any instance reaches its `$aws` topics.
 */

/** Things remembered at most; the least recently marked are forgotten first. */
const DEFAULT_CAPACITY = 1_000_000;

/** The set of things using the AWS families. */
export class AwsThings {
  private readonly seen = new Map<string, true>();
  private readonly capacity: number;
  private readonly onNew: ((thing: string) => void) | undefined;

  constructor(options: { capacity?: number; onNew?: (thing: string) => void } = {}) {
    this.capacity = options.capacity ?? DEFAULT_CAPACITY;
    this.onNew = options.onNew;
  }

  /** Records that `thing` uses the AWS families; returns true when it was not known yet. */
  mark(thing: string): boolean {
    const known = this.seen.delete(thing);
    this.seen.set(thing, true);
    if (this.seen.size > this.capacity) this.seen.delete(this.seen.keys().next().value!);
    if (!known) this.onNew?.(thing);
    return !known;
  }

  /** True when answers for `thing` go to the AWS topics too. */
  has(thing: string): boolean {
    return this.seen.has(thing);
  }
}
