/**
 * Builds the rollout parts (groups, jobs, engine, retention, deployments, fleet view) from what the
 * composition root already has, so that `server/updraft-server.ts` wires them with a few
 * lines. The engine is a Part: started after the message bus, stopped before it.
 */
import type { ArtifactService } from '../artifacts/artifact-service.ts';
import { asUpdraftError } from '../errors.ts';
import type { EventBus, UpdraftEvents } from '../events/event-bus.ts';
import { FleetOverviewSource } from '../fleet/fleet-overview.ts';
import { FleetView } from '../fleet/fleet-view.ts';
import { GroupService } from '../fleet/group-service.ts';
import { addJobRoutes } from '../http/job-routes.ts';
import type { Router } from '../http/router.ts';
import { isJsonObject } from '../protocol/json.ts';
import type { ShadowReplica } from '../shadow/replica.ts';
import type { StateStore } from '../store/state-store.ts';
import type { Logger } from '../util/logger.ts';
import { DeploymentService } from './deployment-service.ts';
import { withdrawStay } from './desired-software.ts';
import type { ExecutionTracker } from './execution-tracker.ts';
import { JobService } from './job-service.ts';
import { JobRetention, type JobRetentionDeps } from './job-retention.ts';
import { RolloutEngine, type RolloutEngineDeps } from './rollout-engine.ts';

/** What the rollout parts need. */
export interface RolloutDeps {
  store: StateStore;
  events: EventBus;
  replica: ShadowReplica;
  artifacts: ArtifactService;
  tracker: ExecutionTracker;
  logger: Logger;
  /** Live presence, for the fleet view. */
  isOnline: (deviceId: string) => boolean;
  onlineCount: () => number;
  /** Engine tuning and the clock (tests), and the lease when several instances share the store. */
  engine?: Pick<RolloutEngineDeps, 'now' | 'monotonic' | 'tickMs' | 'maxSendPerTick' | 'continuousScanMs' | 'lease' | 'arrivals' | 'artifactStorage' | 'mqttConnected' | 'onLead'>;
  /** How long finished jobs are kept (`jobs.retentionDays`; absent or 0: for ever), and the sweep's tuning (tests). */
  retention?: Pick<JobRetentionDeps, 'days' | 'everyMs' | 'perPass'>;
}

/** The rollout parts. */
export class Rollouts {
  readonly engine: RolloutEngine;
  readonly jobs: JobService;
  readonly groups: GroupService;
  readonly deployments: DeploymentService;
  readonly fleet: FleetView;
  /**
   * The fleet summary, cached: the dashboard's overview, `/fleet/status` and `/fleet/versions`
   * share one computation (each counts the whole registry and every shadow).
   */
  readonly overview: FleetOverviewSource;
  /** Deletes finished jobs past `jobs.retentionDays`, on the instance leading rollouts. */
  readonly retention: JobRetention;
  private readonly deps: RolloutDeps;

  constructor(deps: RolloutDeps) {
    this.deps = deps;
    const { store, events, replica, artifacts, tracker, logger } = deps;
    const now = deps.engine?.now;
    this.engine = new RolloutEngine({ store, events, replica, artifacts, tracker, logger, ...deps.engine });
    this.jobs = new JobService({ store, events, artifacts, engine: this.engine, ...(now ? { now } : {}) });
    // a group that changes may change what continuous jobs target
    this.groups = new GroupService({ store, ...(now ? { now } : {}), onChange: () => this.engine.rescan() });
    this.deployments = new DeploymentService({ store, jobs: this.jobs });
    this.fleet = new FleetView({ store, onlineCount: deps.onlineCount });
    this.overview = new FleetOverviewSource({ store, fleet: this.fleet });
    const engine = this.engine;
    this.retention = new JobRetention({ store, jobs: this.jobs, isLeader: () => engine.isLeader, logger, days: 0, ...deps.retention, ...(now ? { now } : {}) });
  }

  private unsubscribe: (() => void)[] = [];
  private readonly withdrawing = new Set<Promise<void>>();

  /** Recovers rollouts left in flight and starts the scheduler, then the retention sweep. */
  async start(): Promise<void> {
    this.unsubscribe = [
      // a device re-tagged may now match what continuous jobs target, as after a group change
      this.deps.events.on('device.changed', () => this.engine.rescan()),
      // on every instance: the one that handled the device's report sees it
      this.deps.events.on('shadow.updated', (e) => this.onShadowUpdated(e)),
    ];
    await this.engine.start();
    await this.retention.start();
  }

  async stop(): Promise<void> {
    for (const off of this.unsubscribe) off();
    this.unsubscribe = [];
    await this.retention.stop();
    await Promise.all(this.withdrawing);
    await this.engine.stop();
  }

  /**
   * A device that reports SUCCESS of the job whose stay command (`<id>.cancel`) it is asked
   * for finished that job before the cancel or timeout reached it: the stay is withdrawn
   * (desired-software.ts, withdrawStay). Read from the event, no store read on other reports.
   */
  private onShadowUpdated(e: UpdraftEvents['shadow.updated']): void {
    if (e.current.name !== '') return;
    const reported = e.request.state.reported?.software;
    const desired = e.current.state.desired?.software;
    if (!isJsonObject(reported) || reported.status !== 'SUCCESS' || typeof reported.jobId !== 'string') return;
    if (!isJsonObject(desired) || desired.jobId !== `${reported.jobId}.cancel`) return;
    const { deviceId } = e.current;
    const stayJobId = desired.jobId;
    const done = withdrawStay({ store: this.deps.store, replica: this.deps.replica, artifacts: this.deps.artifacts }, deviceId, stayJobId)
      .then((withdrawn) => {
        if (withdrawn) this.deps.logger.info('stay command withdrawn: the device finished the job before its cancel reached it', { deviceId, jobId: reported.jobId as string, version: String(reported.version) });
      })
      .catch((err: unknown) => this.deps.logger.warn('stay command not withdrawn', { deviceId, jobId: stayJobId, error: asUpdraftError(err).message }))
      .finally(() => this.withdrawing.delete(done));
    this.withdrawing.add(done);
  }

  /** Adds the jobs, groups, fleet, events and OpenAPI routes. */
  addRoutes(router: Router): void {
    const { store, events, tracker, isOnline, logger } = this.deps;
    addJobRoutes(router, { store, events, tracker, isOnline, logger: logger.child('events'), jobs: this.jobs, groups: this.groups, fleet: this.fleet, overview: this.overview });
  }
}
