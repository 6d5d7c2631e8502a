/**
 * The web dashboard (issue 8) as one part of the server: its aggregation routes
 * (`insight-routes.ts`), the recent-events buffer they read, and the static files at `/`
 * (`dashboard-route.ts`). The composition root starts it once the rollout parts exist.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import type { EventBus } from '../events/event-bus.ts';
import { RecentEvents } from '../events/recent-events.ts';
import type { ExecutionTracker } from '../jobs/execution-tracker.ts';
import type { Rollouts } from '../jobs/rollouts.ts';
import type { StateStore } from '../store/state-store.ts';
import type { Logger } from '../util/logger.ts';
import { DEFAULT_DASHBOARD_DIR, dashboardRoute } from './dashboard-route.ts';
import { addInsightRoutes } from './insight-routes.ts';
import type { Router } from './router.ts';

/** What the dashboard needs. */
export interface DashboardDeps {
  router: Router;
  store: StateStore;
  events: EventBus;
  rollouts: Pick<Rollouts, 'fleet' | 'groups' | 'jobs' | 'overview'>;
  tracker: ExecutionTracker;
  isOnline: (deviceId: string) => boolean;
  logger: Logger;
  /** The built bundle; default dashboard/dist in the package. */
  dir?: string;
}

/** Routes and the recent-events buffer of the dashboard. */
export class Dashboard {
  private readonly deps: DashboardDeps;
  readonly recent: RecentEvents;

  constructor(deps: DashboardDeps) {
    this.deps = deps;
    this.recent = new RecentEvents({ events: deps.events });
  }

  async start(): Promise<void> {
    const { router, store, rollouts, tracker, isOnline, logger } = this.deps;
    await this.recent.start();
    addInsightRoutes(router, { store, groups: rollouts.groups, fleet: rollouts.fleet, jobs: rollouts.jobs, tracker, recent: this.recent, overview: rollouts.overview, isOnline });
    const dir = this.deps.dir ?? DEFAULT_DASHBOARD_DIR;
    router.setFallback(dashboardRoute({ dir }));
    if (!existsSync(path.join(dir, 'index.html'))) logger.warn('the web dashboard is not built; run: npm run build:dashboard', { dir });
  }

  async stop(): Promise<void> {
    await this.recent.stop();
  }
}
