/**
 * Aggregations for the web dashboard, beside the rest of the operator API (`/api/v1`,
 * behind the operator token): the fleet overview, device search with server-side paging,
 * a device's last events, a job's completions over time and the recent events. Each
 * answer is small and bounded whatever the fleet's size (docs/design.md §8: 100,000 devices).
 */
import { UpdraftError } from '../errors.ts';
import type { RecentEvents } from '../events/recent-events.ts';
import { DEVICE_STATES, countMatching, searchDevices, type DeviceSearch, type DeviceState, type SearchCount } from '../fleet/device-search.ts';
import { deviceTimeline } from '../fleet/device-timeline.ts';
import type { FleetOverviewSource } from '../fleet/fleet-overview.ts';
import type { FleetView } from '../fleet/fleet-view.ts';
import type { GroupService } from '../fleet/group-service.ts';
import type { ExecutionTracker } from '../jobs/execution-tracker.ts';
import type { JobService } from '../jobs/job-service.ts';
import { jobTimeline, type JobTimeline } from '../jobs/job-timeline.ts';
import { isValidId } from '../protocol/topics.ts';
import type { StateStore } from '../store/state-store.ts';
import { SharedAnswers } from '../util/shared-answers.ts';
import { MAX_PAGE, intParam, pageParams } from './paging.ts';
import { sendJson } from './respond.ts';
import type { Router } from './router.ts';

/** What the insight routes need. */
export interface InsightDeps {
  store: StateStore;
  groups: GroupService;
  fleet: FleetView;
  jobs: JobService;
  tracker: ExecutionTracker;
  recent: RecentEvents;
  overview: FleetOverviewSource;
  isOnline: (deviceId: string) => boolean;
}

function optional(url: URL, key: string): string | undefined {
  const v = url.searchParams.get(key)?.trim();
  return v ? v : undefined;
}

/** The device search's filters of a request; BAD_REQUEST for a state that is none. */
function searchFilters(url: URL): Omit<DeviceSearch, 'after' | 'limit'> {
  const state = optional(url, 'state');
  if (state !== undefined && !(DEVICE_STATES as readonly string[]).includes(state)) throw new UpdraftError('BAD_REQUEST', `state must be one of ${DEVICE_STATES.join(', ')}; got ${state}`);
  const id = optional(url, 'id');
  const tag = optional(url, 'tag');
  const group = optional(url, 'group');
  const version = optional(url, 'version');
  return {
    ...(id ? { id } : {}),
    ...(tag ? { tag } : {}),
    ...(group ? { group } : {}),
    ...(version ? { version } : {}),
    ...(state ? { state: state as DeviceState } : {}),
  };
}

/** How long a device count is answered from the last one for the same filters (the devices page's total: at most this old). */
export const COUNT_KEPT_MS = 15_000;

/** Adds the dashboard's aggregation routes. */
export function addInsightRoutes(router: Router, deps: InsightDeps): void {
  const { store, tracker } = deps;
  // a big job's chart reads all its finished executions: open pages share one read, made
  // again only when the job's counts changed (a cheap grouped count tells)
  const timelines = new SharedAnswers<string, JobTimeline, string>({ max: 100, fresh: (kept, now) => kept === now });

  router.add('GET', '/api/v1/fleet/overview', async ({ res }) => sendJson(res, 200, await deps.overview.get()));

  router.add('GET', '/api/v1/fleet/search', async ({ res, url }) => {
    const { limit, after } = pageParams(url, 50);
    const page = await searchDevices(deps, { limit, ...(after ? { after } : {}), ...searchFilters(url) });
    sendJson(res, 200, page);
  });

  // how many devices the search's filters match: the devices page's total, asked once per
  // search rather than per page (device-search.ts countMatching: at most 100,000 devices read).
  // One count per filters at a time, its answer kept COUNT_KEPT_MS: a tab going back to a list,
  // or several tabs, each asked a new read of up to 100,000 devices (review of 43af95e). A count
  // still running is shared however long it takes (until 2026-12-07 one running longer than
  // COUNT_KEPT_MS, on a loaded server, was started again beside itself by the next request)
  // (a count that failed is not kept: the next request counts again)
  const counts = new SharedAnswers<string, SearchCount, number>({ max: 100, shareRunning: true, fresh: (at, now) => now - at <= COUNT_KEPT_MS });
  router.add('GET', '/api/v1/fleet/search/count', async ({ res, url }) => {
    const filters = searchFilters(url);
    sendJson(res, 200, await counts.get(JSON.stringify(filters), Date.now(), () => countMatching(deps, filters)));
  });

  router.add('GET', '/api/v1/devices/:id/events', async ({ res, params, url }) => {
    const deviceId = params.id!;
    if (!isValidId(deviceId)) throw new UpdraftError('BAD_REQUEST', `"${deviceId}" is not a valid device id`);
    if (!(await store.getDevice(deviceId))) throw new UpdraftError('NOT_FOUND', `device ${deviceId} is not registered`);
    const limit = intParam(url, 'limit', 30, 1, 200);
    await tracker.idle();
    // from its newest 1,000 jobs (an older job whose steps are still among the newest is unheard of)
    const history = await deps.fleet.history(deviceId, { limit: MAX_PAGE });
    sendJson(res, 200, { deviceId, items: deviceTimeline(history.items, deps.recent, deviceId, limit) });
  });

  router.add('GET', '/api/v1/jobs/:id/timeline', async ({ res, params, url }) => {
    const buckets = intParam(url, 'buckets', 60, 1, 500);
    const job = await deps.jobs.get(params.id!);
    const key = `${job.jobId}/${buckets}`;
    await tracker.idle();
    const counts = await store.countExecutions(job.jobId);
    // a running job's chart grows with the clock: refresh it at least every 5 s
    const clock = ['COMPLETED', 'CANCELED', 'ABORTED'].includes(job.status) ? '' : String(Math.floor(Date.now() / 5000));
    const fingerprint = `${job.status}|${clock}|${counts.map((c) => `${c.wave}:${c.status}:${c.count}`).join(',')}`;
    sendJson(res, 200, await timelines.get(key, fingerprint, () => jobTimeline(store, job, buckets, Date.now())));
  });

  router.add('GET', '/api/v1/events/recent', async ({ res, url }) => {
    const limit = intParam(url, 'limit', 50, 1, 500);
    const deviceId = optional(url, 'deviceId');
    const jobId = optional(url, 'jobId');
    sendJson(res, 200, { items: deps.recent.list({ limit, ...(deviceId ? { deviceId } : {}), ...(jobId ? { jobId } : {}) }) });
  });
}
