/**
 * Re-sends the update commands of open executions after the database may have gone back
 * (StateStore.onDisruption: a restore, a failover that lost writes). A device whose outcome
 * report the database lost is still asked, by the restored shadow, for the command it
 * finished, and its execution is open again; its MQTT connection was not cut, so it never
 * asks again, and nothing else sends the command again until a timeout, a reconnect or a new
 * job (QA, 2026-12-06: executions open for good after a restore). The agent answers a command
 * it finished with its outcome again (agent.ts, a command for a finished job), so the
 * device only needs to hear it once more.
 *
 * On the instance that leads rollouts, once the store answers again (tried with a backoff): the
 * open executions of active jobs whose command was sent, a page at a time, and for each the
 * delta the device's shadow yields now, published again (`ShadowReplica.resendDelta`), only
 * when that shadow still asks for that execution's command. Nothing is decided or written:
 * what the restored database asks for is asked again. Paced (`perSecond`, a turn of the event
 * loop between pages); a disruption during a pass starts it over, never a second one beside it.
 */
import { setImmediate as nextTurn } from 'node:timers/promises';
import { asUpdraftError } from '../errors.ts';
import { isJsonObject } from '../protocol/json.ts';
import { parseReportedSoftware } from '../protocol/software.ts';
import type { ShadowReplica } from '../shadow/replica.ts';
import { ACTIVE_JOB_STATUSES, type ExecutionRecord, type ShadowRecord, type StateStore } from '../store/state-store.ts';
import type { Logger } from '../util/logger.ts';
import { agentJobId } from './agent-job-id.ts';
import { finished } from './desired-software.ts';
import { openExecutions } from './open-executions.ts';

/** What the resync needs. */
export interface DisruptionResyncDeps {
  store: Pick<StateStore, 'onDisruption' | 'listJobs' | 'listJobExecutions'>;
  replica: Pick<ShadowReplica, 'resendDelta'>;
  /** True on the instance that leads rollouts: the only one that re-sends. */
  isLeader: () => boolean;
  logger: Logger;
  /** Devices re-sent per second at most (default 500). */
  perSecond?: number;
  /** Executions read a page (default 250). */
  pageSize?: number;
  /** Wait after the last disruption before the first try, in ms (default 5 s): a restore's load. */
  settleMs?: number;
  /** The first wait after a try that failed or found another instance leading, doubled up to `maxDelayMs` (defaults 1 s, 30 s). */
  firstDelayMs?: number;
  maxDelayMs?: number;
  /** How long the instance waits to lead (its lease taken again after the outage) before it leaves the pass to the leader, in ms (default 60 s). */
  leadWaitMs?: number;
}

/** Defaults of the tuning. */
export const DISRUPTION_RESYNC_DEFAULTS = { perSecond: 500, pageSize: 250, settleMs: 5_000, firstDelayMs: 1_000, maxDelayMs: 30_000, leadWaitMs: 60_000 } as const;

/** The reason a pass on a lead taken gives in its start line. */
export const LEAD_TAKEN = 'this instance took the lead (a start, a failover): done at every lead taken, in case the database was restored while no instance ran or the last leader stopped mid-send';

/**
 * What started the pass, the first words of its lines: a disruption of the store's
 * connections, or this instance coming to lead rollouts (behind an external broker).
 */
type Trigger = 'store disruption' | 'lead taken';

/** Why a pass may be owed, in its start line, by what started it. */
const MAY_HAVE_LOST: Record<Trigger, string> = {
  'store disruption': 'the database may have gone back',
  // said as routine: it runs at every lead taken, a first start and a failover too, and the
  // words of a disruption read as a restore to operators (QA of docs/deployment.md, 2026-12-07)
  'lead taken': 'as at every lead taken, in case the database went back or the last leader stopped mid-send',
};

/** What one pass did. */
interface PassCounts {
  jobs: number;
  /** Open executions whose command was sent. */
  executions: number;
  /** Their command published again. */
  resent: number;
  /** The shadow asks for something else now (or nothing, or the device reported finishing it): nothing sent. */
  moved: number;
  /** No subscription to the device's delta topic (offline): it asks with get when it comes back. */
  offline: number;
  /** Not re-sent: the store or the replica refused (after a second try). */
  failed: number;
}

/** Why a pass ended before its end. */
type CutShort = 'disrupted again' | 'stopped' | 'not leading';

/** Re-sends the commands of open executions after a store disruption, on the leader. */
export class DisruptionResync {
  private readonly deps: DisruptionResyncDeps;
  private offDisruption: (() => void) | undefined;
  private stopped = true;
  /** Disruptions seen, and the one the last finished pass (or the decision not to run one) answered. */
  private disruptions = 0;
  private answered = 0;
  private reason = '';
  /** What started the latest disruption's pass (its lines say it). */
  private trigger: Trigger = 'store disruption';
  /** The loop under way (one at most). */
  private running: Promise<void> | undefined;
  /** Ends the wait under way at once (a new disruption, stop). */
  private wake: (() => void) | undefined;

  constructor(deps: DisruptionResyncDeps) {
    this.deps = deps;
  }

  async start(): Promise<void> {
    this.stopped = false;
    this.offDisruption = this.deps.store.onDisruption?.((reason) => this.disrupted(reason, 'store disruption'));
  }

  /** Stops listening, ends the wait or the pass under way (after its page) and waits for it. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.offDisruption?.();
    this.offDisruption = undefined;
    this.wake?.();
    await this.running;
  }

  /**
   * This instance came to lead rollouts (its lease taken: at start, or from a leader that
   * died): the same pass, as after a disruption. Called by the server behind an external
   * broker only, where devices keep their connections across instances' restarts: a database
   * restored while no instance ran (as docs/deployment.md advises) is seen by no instance as
   * a disruption, and a device whose outcome it lost is never asked again (QA, 2026-12-06).
   * With the embedded broker every device reconnects to the started instance and asks with
   * `get`. One loop at most: a pass owed or under way starts over, never a second beside it.
   */
  leadTaken(reason = LEAD_TAKEN): void {
    this.disrupted(reason, 'lead taken');
  }

  /** True while a pass is owed or under way (tests). */
  get busy(): boolean {
    return this.running !== undefined;
  }

  private disrupted(reason: string, trigger: Trigger): void {
    if (this.stopped) return;
    this.disruptions++;
    this.reason = reason;
    this.trigger = trigger;
    this.wake?.();
    this.running ??= this.loop().finally(() => {
      this.running = undefined;
    });
  }

  /** Until the latest disruption is answered: wait, try, back off. */
  private async loop(): Promise<void> {
    const d = DISRUPTION_RESYNC_DEFAULTS;
    let tries = 0;
    let leadTries = 0;
    let notLeading = 0;
    let generation = -1;
    while (!this.stopped && this.answered < this.disruptions) {
      if (generation !== this.disruptions) {
        // a new disruption: wait for the database to settle again, and start over
        generation = this.disruptions;
        tries = 0;
        leadTries = 0;
        notLeading = 0;
        await this.pause(this.deps.settleMs ?? d.settleMs);
        continue;
      }
      if (!this.deps.isLeader()) {
        // the lease goes with the database's connections, and is taken again once it answers
        if (notLeading >= (this.deps.leadWaitMs ?? d.leadWaitMs)) {
          this.deps.logger.debug(`${this.trigger}: not leading rollouts, the commands of open executions are left to the leader`);
          this.answered = generation;
          continue;
        }
        const wait = this.delay(leadTries++);
        notLeading += wait;
        await this.pause(wait);
        continue;
      }
      try {
        const cut = await this.pass(generation);
        if (cut === 'not leading') continue;
        if (cut === undefined) this.answered = generation;
      } catch (err) {
        tries++;
        if (tries === 1 || tries % 10 === 0) this.deps.logger.warn(`${this.trigger}: the update commands of open executions not re-sent yet (the store does not answer); tried again`, { tries, error: asUpdraftError(err).message });
        await this.pause(this.delay(tries));
      }
    }
  }

  /** The wait after `tries` failed tries: doubling from firstDelayMs up to maxDelayMs, with jitter. */
  private delay(tries: number): number {
    const first = this.deps.firstDelayMs ?? DISRUPTION_RESYNC_DEFAULTS.firstDelayMs;
    const max = this.deps.maxDelayMs ?? DISRUPTION_RESYNC_DEFAULTS.maxDelayMs;
    return Math.min(max, first * 2 ** Math.min(Math.max(tries - 1, 0), 20)) * (0.8 + 0.4 * Math.random());
  }

  /** Waits `ms`, ended at once by a new disruption or stop. */
  private pause(ms: number): Promise<void> {
    if (this.stopped || ms <= 0) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        if (this.wake === done) this.wake = undefined;
        resolve();
      };
      const timer = setTimeout(done, ms);
      timer.unref();
      this.wake = done;
    });
  }

  /**
   * One pass over the open executions of active jobs; undefined when it went through, else why
   * it was cut short (what it did is in its end line). Rejects when the store fails a listing.
   */
  private async pass(generation: number): Promise<CutShort | undefined> {
    const { store, logger } = this.deps;
    const pageSize = this.deps.pageSize ?? DISRUPTION_RESYNC_DEFAULTS.pageSize;
    const perSecond = this.deps.perSecond ?? DISRUPTION_RESYNC_DEFAULTS.perSecond;
    const counts: PassCounts = { jobs: 0, executions: 0, resent: 0, moved: 0, offline: 0, failed: 0 };
    const began = performance.now();
    // the lines say what started the pass (a lead taken said 'store disruption' before), as it
    // stood when the pass began: one that starts it over has its own start line
    const trigger = this.trigger;
    const cutShort = (): CutShort | undefined => (this.stopped ? 'stopped' : generation !== this.disruptions ? 'disrupted again' : !this.deps.isLeader() ? 'not leading' : undefined);
    const end = (cut: CutShort | undefined) => {
      logger.info(cut ? `${trigger}: re-sending the update commands of open executions cut short (${cut})` : `${trigger}: update commands of open executions re-sent`, { ...counts, ms: Math.round(performance.now() - began) });
      return cut;
    };
    let cut: CutShort | undefined;
    let said = false;
    const walk = openExecutions(store, {
      jobStatuses: ACTIVE_JOB_STATUSES,
      pageSize,
      omitSpec: true,
      // asked before each page of executions, its answer kept for the end line; a page of jobs
      // is read, and its first job counted, before it is asked
      stopped: () => (cut = cutShort()) !== undefined,
      stopBeforeJobs: false,
      // the first listing is the store's answer: a pass that cannot read says nothing but the retry's line
      onJobs: () => {
        if (said) return;
        said = true;
        logger.info(`${trigger}: re-sending the update commands of open executions (${MAY_HAVE_LOST[trigger]})`, { reason: this.reason });
      },
      onJob: () => counts.jobs++,
    });
    // those whose command was sent (commandSent), as the engine's catch-up reads them
    for await (const { executions: sent } of walk) {
      const started = performance.now();
      await this.resend(sent, counts, trigger);
      await nextTurn();
      // at most perSecond devices a second: the page's share of a second, what is left of it
      await this.pause((sent.length * 1000) / perSecond - (performance.now() - started));
    }
    if (cut) return end(cut);
    return end(cutShort() === 'stopped' ? 'stopped' : undefined);
  }

  /** Re-sends the commands of `executions` (one page, together); those that fail are tried once more. */
  private async resend(executions: ExecutionRecord[], counts: PassCounts, trigger: Trigger): Promise<void> {
    counts.executions += executions.length;
    let left = executions;
    for (let attempt = 1; attempt <= 2 && left.length > 0; attempt++) {
      if (attempt > 1) await this.pause(this.deps.firstDelayMs ?? DISRUPTION_RESYNC_DEFAULTS.firstDelayMs);
      const failed: ExecutionRecord[] = [];
      let error: string | undefined;
      const outcomes = await Promise.all(
        left.map((e) =>
          this.deps.replica.resendDelta(e.deviceId, (shadow) => asksFor(shadow, agentJobId(e.jobId, e.attempt ?? 1))).catch((err: unknown) => {
            failed.push(e);
            error = asUpdraftError(err).message;
            return undefined;
          }),
        ),
      );
      for (const o of outcomes) {
        if (o === 'sent') counts.resent++;
        else if (o === 'none') counts.moved++;
        else if (o === 'unheard') counts.offline++;
      }
      if (failed.length > 0 && attempt === 2) {
        counts.failed += failed.length;
        this.deps.logger.warn(`${trigger}: update commands not re-sent to some devices; their executions wait for a timeout or the device asking`, { devices: failed.length, error });
      }
      left = failed;
    }
  }
}

/**
 * True when `shadow` asks for the command `askedId` (desired.software names it) and the device
 * has not reported finishing it: re-sent then, and only then. A device that reported its
 * outcome needs no asking (the engine's catch-up, on the lease taken again, records it).
 */
function asksFor(shadow: ShadowRecord, askedId: string): boolean {
  const desired = shadow.state.desired?.software;
  if (!isJsonObject(desired) || desired.jobId !== askedId) return false;
  return !finished(parseReportedSoftware(shadow.state.reported?.software), askedId);
}
