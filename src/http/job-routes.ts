/**
 * Rollout routes of the operator API (`/api/v1`): jobs, groups, the fleet view, the live
 * event stream and the OpenAPI document. Every route is behind the operator token (the
 * HTTP server checks it for all of `/api/`).
 */
import { UpdraftError } from '../errors.ts';
import type { EventBus } from '../events/event-bus.ts';
import type { FleetView } from '../fleet/fleet-view.ts';
import type { FleetOverviewSource } from '../fleet/fleet-overview.ts';
import { groupView, type GroupService } from '../fleet/group-service.ts';
import { selectPage } from '../fleet/device-selector.ts';
import { parseQuery } from '../fleet/query.ts';
import { EXECUTION_STATUSES } from '../jobs/execution-state.ts';
import type { ExecutionTracker } from '../jobs/execution-tracker.ts';
import type { JobService } from '../jobs/job-service.ts';
import type { JobStatus, StateStore } from '../store/state-store.ts';
import type { Logger } from '../util/logger.ts';
import { isValidId } from '../protocol/topics.ts';
import { addEventStream } from './event-stream.ts';
import { answerCreation, idempotencyClaim } from './idempotency-key.ts';
import { openApiDocument } from './openapi.ts';
import { listParam, pageParams } from './paging.ts';
import { readJson, sendJson } from './respond.ts';
import type { Router } from './router.ts';
import { refuseUnknownFields } from '../protocol/known-fields.ts';

/** What the rollout routes need. */
export interface JobRoutesDeps {
  store: StateStore;
  jobs: JobService;
  groups: GroupService;
  fleet: FleetView;
  /** The cached fleet summary (fleet-overview.ts), shared with the dashboard's overview. */
  overview: FleetOverviewSource;
  tracker: ExecutionTracker;
  events: EventBus;
  isOnline: (deviceId: string) => boolean;
  logger?: Logger;
}

const JOB_STATES: readonly JobStatus[] = ['SCHEDULED', 'IN_PROGRESS', 'PAUSED', 'COMPLETED', 'CANCELED', 'ABORTED'];

/** Adds the rollout routes to `router`. */
export function addJobRoutes(router: Router, deps: JobRoutesDeps): void {
  const { store, jobs, groups, fleet, tracker } = deps;

  router.add('GET', '/api/v1/openapi.json', async ({ res }) => sendJson(res, 200, openApiDocument()));

  // ---- jobs
  // with an Idempotency-Key (idempotency-key.ts): created once; the key's job answered again (200, Idempotent-Replayed) to a retry
  router.add('POST', '/api/v1/jobs', async ({ req, res, audit }) => {
    const body = await readJson(req);
    const claim = idempotencyClaim(req, '/api/v1/jobs', body);
    const { value: view, replayed } = await answerCreation(res, () => jobs.createWithKey(body, claim));
    Object.assign(audit, { jobId: view.job.jobId, artifact: `${view.job.artifactName}@${view.job.artifactVersion}`, ...(replayed ? { replayed: true } : {}) });
  });
  // the same body as a creation: what the job would target, wave by wave, and when it would start; nothing is written
  router.add('POST', '/api/v1/jobs/preview', async ({ req, res }) => sendJson(res, 200, await jobs.preview(await readJson(req))));

  router.add('GET', '/api/v1/jobs', async ({ res, url }) => {
    const status = listParam(url, 'status', JOB_STATES);
    // summaries: a spec that lists its devices runs to megabytes; GET /api/v1/jobs/:id has it
    sendJson(res, 200, await store.listJobs({ ...pageParams(url), ...(status ? { status } : {}), omitSpec: true }));
  });

  router.add('GET', '/api/v1/jobs/:id', async ({ res, params, url }) => {
    await tracker.idle();
    const view = await jobs.view(params.id!);
    // the first page of executions (all of them for small jobs); /executions pages through the rest
    const page = await store.listJobExecutions(view.job.jobId, pageParams(url, 1000));
    sendJson(res, 200, { ...view, executions: page.items, ...(page.next ? { next: page.next } : {}) });
  });

  router.add('GET', '/api/v1/jobs/:id/executions', async ({ res, params, url }) => {
    await tracker.idle();
    const job = await jobs.get(params.id!);
    const status = listParam(url, 'status', EXECUTION_STATUSES);
    sendJson(res, 200, await store.listJobExecutions(job.jobId, { ...pageParams(url), ...(status ? { status } : {}) }));
  });

  // devices' logs of failed attempts (jobs/job-logs.ts): a list without the lines, then one with them
  router.add('GET', '/api/v1/jobs/:id/logs', async ({ res, params, url }) => {
    const job = await jobs.get(params.id!);
    sendJson(res, 200, await store.listJobLogs(job.jobId, pageParams(url)));
  });
  router.add('GET', '/api/v1/jobs/:id/logs/:deviceId', async ({ res, params }) => {
    const job = await jobs.get(params.id!);
    const log = await store.getJobLog(job.jobId, params.deviceId!);
    if (!log) {
      // why there is none: a mistyped id read like a device that sent nothing (QA)
      const deviceId = params.deviceId!;
      if (!(await store.getExecution(job.jobId, deviceId))) {
        if (!(await store.getDevice(deviceId))) throw new UpdraftError('NOT_FOUND', `device ${deviceId} is not registered; list devices with: updraft device list`);
        throw new UpdraftError('NOT_FOUND', `device ${deviceId} is not in job ${job.jobId}; its devices: updraft job show ${job.jobId}`);
      }
      throw new UpdraftError('NOT_FOUND', `device ${deviceId} sent no log for job ${job.jobId} (a device sends one when an attempt fails)`);
    }
    sendJson(res, 200, log);
  });

  router.add('POST', '/api/v1/jobs/:id/pause', async ({ res, params }) => sendJson(res, 200, await jobs.pause(params.id!)));
  router.add('POST', '/api/v1/jobs/:id/resume', async ({ res, params }) => sendJson(res, 200, await jobs.resume(params.id!)));
  router.add('POST', '/api/v1/jobs/:id/cancel', async ({ res, params }) => sendJson(res, 200, await jobs.cancel(params.id!)));
  // a finished job and everything kept under its id; 409 for one not finished, or whose devices are still being stopped
  router.add('DELETE', '/api/v1/jobs/:id', async ({ res, params }) => sendJson(res, 200, { deleted: await jobs.delete(params.id!) }));

  // ---- groups
  // a group shows its members counted (size); they are listed a page at a time
  router.add('GET', '/api/v1/groups', async ({ res }) => sendJson(res, 200, { items: (await groups.list()).map(groupView) }));
  router.add('POST', '/api/v1/groups', async ({ req, res, audit }) => {
    const body = await readJson(req, 16 << 20);
    const group = await groups.create(body as never);
    audit.group = group.name;
    sendJson(res, 201, groupView(group));
  });
  router.add('GET', '/api/v1/groups/:name', async ({ res, params, url }) => {
    const group = await groups.get(params.name!);
    const page = await groups.members(group.name, pageParams(url));
    const members = page.items.map((s) => s.device.deviceId);
    // scanned: the devices read for this page, as /fleet/devices answers it
    sendJson(res, 200, { group: groupView(group), members, ...(page.next ? { next: page.next } : {}), scanned: page.scanned });
  });
  router.add('DELETE', '/api/v1/groups/:name', async ({ res, params }) => {
    await groups.delete(params.name!);
    sendJson(res, 200, { deleted: params.name });
  });
  router.add('POST', '/api/v1/groups/:name/members', async ({ req, res, params, audit }) => {
    const body = await readJson(req, 16 << 20);
    refuseUnknownFields(body, ['add', 'remove']);
    const group = await groups.changeMembers(params.name!, body.add, body.remove);
    // counts: a member list runs to thousands
    Object.assign(audit, { added: Array.isArray(body.add) ? body.add.length : 0, removed: Array.isArray(body.remove) ? body.remove.length : 0 });
    sendJson(res, 200, groupView(group));
  });

  // ---- fleet view
  router.add('GET', '/api/v1/fleet/devices', async ({ res, url }) => {
    const text = url.searchParams.get('query');
    // no query lists every device; a query given empty (`?query=`) is refused like any other empty query
    const query = text !== null ? parseQuery(text) : undefined;
    const page = await selectPage(store, query, pageParams(url));
    const items = page.items.map((s) => ({
      deviceId: s.device.deviceId,
      attributes: s.device.attributes,
      tags: s.device.tags,
      revoked: s.device.revoked,
      online: deps.isOnline(s.device.deviceId),
      reported: s.reported?.software ?? null,
      desired: s.desired?.software ?? null,
      // what its agent says of itself: trust, time zone, features, certificate expiry and renewal
      agent: s.reported?.agent ?? null,
    }));
    sendJson(res, 200, { items, ...(page.next ? { next: page.next } : {}), scanned: page.scanned });
  });
  // from the overview's cache (at most 2 s old, or ten times what computing took): each counts
  // the whole registry and every shadow, 1.0-3.4 s at 200,000 devices on PostgreSQL (QA), and
  // `updraft status` and monitoring ask for them as often as they like
  router.add('GET', '/api/v1/fleet/versions', async ({ res }) => {
    const { versions, generatedAt } = await deps.overview.get();
    sendJson(res, 200, { items: versions, generatedAt });
  });
  router.add('GET', '/api/v1/fleet/status', async ({ res }) => {
    const { devices, versions, jobs: perState, generatedAt } = await deps.overview.get();
    sendJson(res, 200, { devices, versions, jobs: perState, generatedAt });
  });
  router.add('GET', '/api/v1/devices/:id/history', async ({ res, params, url }) => {
    if (!isValidId(params.id!)) throw new UpdraftError('BAD_REQUEST', `"${params.id}" is not a valid device id`);
    const page = pageParams(url);
    if (!(await store.getDevice(params.id!))) throw new UpdraftError('NOT_FOUND', `device ${params.id} is not registered`);
    await tracker.idle();
    sendJson(res, 200, { deviceId: params.id, ...(await fleet.history(params.id!, page)) });
  });

  addEventStream(router, { events: deps.events, ...(deps.logger ? { logger: deps.logger } : {}) });
}
