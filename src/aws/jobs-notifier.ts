/**
 * AWS Jobs notifications (issue 9): `$aws/things/{thing}/jobs/notify` when a thing's
 * pending list changes and `.../notify-next` when its next pending job changes (without an
 * `execution` when none is left), for things that use the AWS families. A job is announced
 * once its execution records it sent, so that the `versionNumber` announced is the one an
 * update's `expectedVersion` is checked against. Shapes:
 * https://docs.aws.amazon.com/iot/latest/developerguide/jobs-mqtt-api.html
 */
import { asUpdraftError } from '../errors.ts';
import type { EventBus, UpdraftEvents } from '../events/event-bus.ts';
import { awsJobsNotifyTopic } from '../protocol/aws-topics.ts';
import type { JsonObject } from '../protocol/json.ts';
import { KeyedQueue } from '../shadow/keyed-queue.ts';
import type { Logger } from '../util/logger.ts';
import type { AwsThings } from './aws-things.ts';
import { executionOf, isPending, summaryOf } from './job-view.ts';
import type { ThingJobs } from './thing-jobs.ts';

/** What the notifier needs. */
export interface JobsNotifierDeps {
  events: EventBus;
  things: AwsThings;
  jobs: ThingJobs;
  publish: (topic: string, payload: string) => Promise<void>;
  /** False when nobody subscribes to `topic`: that notification is skipped. */
  wanted: (topic: string) => boolean;
  logger: Logger;
  /** Milliseconds since the epoch (tests). */
  now?: () => number;
}

/** Things whose last notify-next is remembered; a forgotten one may get a repeated notify-next. */
const MAX_ANNOUNCED = 1_000_000;

/** Publishes notify and notify-next when a thing's next job changes. */
export class AwsJobsNotifier {
  private readonly deps: JobsNotifierDeps;
  private readonly queue = new KeyedQueue(1_000_000);
  /** Per thing, the next job last announced (`jobId#executionNumber`, '' for none). */
  private readonly announced = new Map<string, string>();
  private unsubscribe: (() => void)[] = [];

  constructor(deps: JobsNotifierDeps) {
    this.deps = deps;
  }

  /** Starts listening to shadow and execution changes. */
  async start(): Promise<void> {
    const { events } = this.deps;
    this.unsubscribe = [events.on('shadow.updated', (e) => this.onShadowUpdated(e)), events.on('execution.changed', (e) => this.onExecutionChanged(e))];
  }

  /** Stops listening and waits for notifications under way. */
  async stop(): Promise<void> {
    for (const u of this.unsubscribe) u();
    this.unsubscribe = [];
    await this.queue.drain();
  }

  private onShadowUpdated(e: UpdraftEvents['shadow.updated']): void {
    if (e.current.name === '' && this.deps.things.has(e.current.deviceId)) this.recheck(e.current.deviceId);
  }

  /**
   * Also relayed from other instances (cluster/event-relay.ts): the instance consuming `$aws`
   * requests learns of a command another instance sent from its dispatch (`dispatchedAt`).
   */
  private onExecutionChanged(e: UpdraftEvents['execution.changed']): void {
    const p = e.previous;
    const c = e.current;
    if (p && p.status === c.status && p.dispatchedAt === c.dispatchedAt && p.attempt === c.attempt) return;
    if (this.deps.things.has(c.deviceId)) this.recheck(c.deviceId);
  }

  /** Looks at the thing's next job again and announces it if it changed. */
  recheck(thing: string): void {
    this.queue.run(thing, () => this.announce(thing)).catch((err: unknown) => this.deps.logger.warn('jobs notification not published', { thing, error: asUpdraftError(err).message }));
  }

  private async announce(thing: string): Promise<void> {
    const { jobs, wanted } = this.deps;
    const view = await jobs.current(thing);
    // the command is written (this shadow update) but not yet recorded sent: the rollout's
    // dispatch write comes next and moves versionNumber, and its execution.changed brings us
    // back. Announced now, the version would be stale before the device could use it as
    // expectedVersion (VersionMismatch on its first update)
    if (view?.sendPending) return;
    const next = view && isPending(view) ? view : undefined;
    const key = next ? `${next.jobId}#${next.executionNumber}` : '';
    const before = this.announced.get(thing);
    if (before === key || (before === undefined && key === '')) return;
    this.announced.delete(thing);
    this.announced.set(thing, key);
    if (this.announced.size > MAX_ANNOUNCED) this.announced.delete(this.announced.keys().next().value!);
    const timestamp = Math.floor((this.deps.now ? this.deps.now() : Date.now()) / 1000);
    const notifyTopic = awsJobsNotifyTopic(thing, 'notify');
    if (wanted(notifyTopic)) {
      const list: JsonObject = next ? { [next.status]: [summaryOf(next) as unknown as JsonObject] } : {};
      await this.publish(notifyTopic, { timestamp, jobs: list });
    }
    const nextTopic = awsJobsNotifyTopic(thing, 'notify-next');
    if (wanted(nextTopic)) {
      // the document signs a URL: only for a listener
      const message: JsonObject = { timestamp };
      if (next) message.execution = executionOf(next, await jobs.documentOf(next)) as unknown as JsonObject;
      await this.publish(nextTopic, message);
    }
  }

  private async publish(topic: string, message: object): Promise<void> {
    try {
      await this.deps.publish(topic, JSON.stringify(message));
    } catch (err) {
      this.deps.logger.warn('jobs notification not published', { topic, error: asUpdraftError(err).message });
    }
  }
}
