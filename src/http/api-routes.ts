/**
 * The operator REST API, `/api/v1/...`, behind the operator token. The CLI is a client of it.
 */
import type { IncomingMessage } from 'node:http';
import type { ArtifactService } from '../artifacts/artifact-service.ts';
import { parseCompatibility } from '../protocol/compatibility.ts';
import { UpdraftError } from '../errors.ts';
import type { EventBus } from '../events/event-bus.ts';
import { decommissionDevice } from '../fleet/decommission.ts';
import type { DeploymentService } from '../jobs/deployment-service.ts';
import type { ExecutionTracker } from '../jobs/execution-tracker.ts';
import { requeueReinstated } from '../jobs/retry-policy.ts';
import { isValidId } from '../protocol/topics.ts';
import { publicDevice, type DeviceRegistration, type DeviceRegistry } from '../registry/device-registry.ts';
import type { ShadowReplica } from '../shadow/replica.ts';
import type { ArtifactRecord, StateStore } from '../store/state-store.ts';
import type { ArtifactSignatureStatus } from '../signing/manifest-signer.ts';
import { pageParams } from './paging.ts';
import { readJson, sendJson } from './respond.ts';
import type { Router } from './router.ts';
import { answerCreation, idempotencyClaim } from './idempotency-key.ts';
import { refuseUnknownFields } from '../protocol/known-fields.ts';

/** What the API needs. */
export interface ApiDeps {
  store: StateStore;
  replica: ShadowReplica;
  artifacts: ArtifactService;
  deployments: DeploymentService;
  tracker: ExecutionTracker;
  registry: DeviceRegistry;
  events: EventBus;
  /** True when the device has an open MQTT connection. */
  isOnline: (deviceId: string) => boolean;
  /** How an artifact's recorded signature stands against the current signing key; adds `signatureStatus` to the artifact list. */
  checkArtifactSignature?: (artifact: ArtifactRecord, signature: string) => ArtifactSignatureStatus;
}

function signatureStatus(a: ArtifactRecord, check: NonNullable<ApiDeps['checkArtifactSignature']>): ArtifactSignatureStatus | 'unsigned' {
  return a.signature ? check(a, a.signature) : 'unsigned';
}

function deviceParam(id: string): string {
  if (!isValidId(id)) throw new UpdraftError('BAD_REQUEST', `"${id}" is not a valid device id`);
  return id;
}

function query(req: IncomingMessage, url: URL, key: string): string {
  const v = url.searchParams.get(key);
  if (!v) throw new UpdraftError('BAD_REQUEST', `query parameter "${key}" is required`);
  return v;
}

/** Adds the API routes to `router`. */
export function addApiRoutes(router: Router, deps: ApiDeps): void {
  // a page, newest first, as every list, when asked with limit or after: a fleet's nightly
  // builds run to thousands, each answer checked a signature per build (?name= pages one
  // name's versions). Asked with neither, the whole list, as before 2026-12-05: a client of
  // then (an older updraft CLI, a script) knows no next, and a first page alone would have
  // hidden every older build from it without a word
  router.add('GET', '/api/v1/artifacts', async ({ res, url }) => {
    const name = url.searchParams.get('name');
    if (name === '') throw new UpdraftError('BAD_REQUEST', 'name is empty: give an artifact name, or leave name out to list every artifact');
    const paged = url.searchParams.has('limit') || url.searchParams.has('after');
    const page = paged ? await deps.artifacts.list({ ...pageParams(url), ...(name !== null ? { name } : {}) }) : { items: await deps.artifacts.all(name ?? undefined), next: undefined };
    const check = deps.checkArtifactSignature;
    const items = check ? page.items.map((a) => ({ ...a, signatureStatus: signatureStatus(a, check) })) : page.items;
    // the size limit too, in every page: a client can refuse a build over it before sending it
    // (`?limit=1` is enough), where the server, which stops reading at the limit, cuts the
    // connection of an upload under way
    sendJson(res, 200, { items, ...(page.next !== undefined ? { next: page.next } : {}), maxArtifactBytes: deps.artifacts.maxBytes });
  });

  // every refusal comes before the body is read: the server answers it and closes the
  // connection, the upload unread (HttpServer.dispatch)
  router.add('POST', '/api/v1/artifacts', async ({ req, res, url }) => {
    const max = deps.artifacts.maxBytes;
    const declared = Number(req.headers['content-length']);
    if (declared > max) throw new UpdraftError('TOO_LARGE', `the build is ${declared} bytes (its Content-Length): the server takes builds of at most ${max} bytes (its --max-artifact-bytes)`);
    // what the build may be installed on: ?deviceTypes=rpi4,rpi5&requires=>=2.5.0 (protocol/compatibility.ts)
    const types = url.searchParams.get('deviceTypes');
    const requires = url.searchParams.get('requires');
    const compatibility = parseCompatibility({ ...(types !== null ? { deviceTypes: types.split(',') } : {}), ...(requires !== null ? { requires } : {}) });
    const record = await deps.artifacts.add(query(req, url, 'name'), query(req, url, 'version'), req, compatibility);
    sendJson(res, 201, record);
  });

  router.add('GET', '/api/v1/artifacts/:name/:version', async ({ res, params }) => sendJson(res, 200, await deps.artifacts.get(params.name!, params.version!)));

  // 409 while a job that is not finished installs it; the jobs that did keep their records
  router.add('DELETE', '/api/v1/artifacts/:name/:version', async ({ res, params }) => sendJson(res, 200, await deps.artifacts.delete(params.name!, params.version!)));
  // old builds out of storage: the `keep` newest of each name stay (dryRun: say what would go)
  router.add('POST', '/api/v1/artifacts/prune', async ({ req, res, audit }) => {
    const body = await readJson(req);
    const fields = ['keep', 'name', 'dryRun'];
    // a misspelt field must not be dropped: {"dryrun": true} deleted the builds it was to list
    refuseUnknownFields(body, fields);
    if (body.name !== undefined && typeof body.name !== 'string') throw new UpdraftError('BAD_REQUEST', 'name must be an artifact name');
    if (body.dryRun !== undefined && typeof body.dryRun !== 'boolean') throw new UpdraftError('BAD_REQUEST', 'dryRun must be true or false');
    const pruned = await deps.artifacts.prune({ keep: body.keep as number, ...(typeof body.name === 'string' ? { name: body.name } : {}), ...(body.dryRun === true ? { dryRun: true } : {}) });
    Object.assign(audit, typeof body.name === 'string' ? { name: body.name } : {}, { keep: body.keep as number, dryRun: pruned.dryRun, deleted: pruned.deleted.length });
    sendJson(res, 200, pruned);
  });

  router.add('POST', '/api/v1/devices', async ({ req, res, audit }) => {
    const body = await readJson(req);
    const { device, secret } = await deps.registry.register(body as unknown as DeviceRegistration);
    audit.deviceId = device.deviceId; // never the secret
    sendJson(res, 201, { device, secret });
  });

  router.add('GET', '/api/v1/devices', async ({ res, url }) => {
    const page = await deps.registry.list(pageParams(url));
    const items = await Promise.all(
      page.items.map(async (d) => {
        const shadow = await deps.store.getShadow(d.deviceId, '');
        const state = shadow && !shadow.deleted ? shadow.state : {};
        return { ...publicDevice(d), online: deps.isOnline(d.deviceId), reported: state.reported?.software ?? null, desired: state.desired?.software ?? null };
      }),
    );
    sendJson(res, 200, { items, ...(page.next ? { next: page.next } : {}) });
  });

  router.add('GET', '/api/v1/devices/:id', async ({ res, params }) => {
    const deviceId = deviceParam(params.id!);
    const device = publicDevice(await deps.registry.get(deviceId));
    const shadow = await deps.replica.getDocument({ deviceId, name: '' }).catch((err: unknown) => {
      if (err instanceof UpdraftError && err.code === 'NOT_FOUND') return null; // registered, never connected
      throw err;
    });
    await deps.tracker.idle();
    // its newest 100 jobs: GET /api/v1/devices/{id}/history pages them all (a device's history only grows)
    const executions = await deps.store.listDeviceExecutions(deviceId, { limit: 100 });
    // its logs of failed attempts (jobs/job-logs.ts), without their lines: GET /api/v1/jobs/{id}/logs/{deviceId} reads one
    const jobLogs = await deps.store.listDeviceJobLogs(deviceId, 100);
    sendJson(res, 200, { deviceId, device, online: deps.isOnline(deviceId), shadow, executions: executions.items, ...(executions.next !== undefined ? { executionsNext: executions.next } : {}), jobLogs });
  });

  router.add('POST', '/api/v1/devices/:id/rotate-secret', async ({ res, params }) => {
    // disconnected: connections the old secret had opened, now closed (null: an external broker's own, closed when it reloads its password file)
    sendJson(res, 200, await deps.registry.rotateSecret(deviceParam(params.id!)));
  });

  router.add('POST', '/api/v1/devices/:id/reinstate', async ({ res, params }) => {
    const deviceId = deviceParam(params.id!);
    const { device, wasRevoked } = await deps.registry.reinstate(deviceId);
    // what its revocation took it out of, in rollouts still running, it is in again (looked for
    // even when it was not revoked: a reinstatement cut off before this step is finished by its retry)
    const jobsRequeued = await requeueReinstated(deps, deviceId, Date.now());
    sendJson(res, 200, { device, wasRevoked, jobsRequeued });
  });

  // decommissioning: revoked and cut off, its unfinished executions REMOVED, its shadows and group memberships gone, then its registration
  router.add('PATCH', '/api/v1/devices/:id', async ({ req, res, params }) => {
    sendJson(res, 200, await deps.registry.update(deviceParam(params.id!), await readJson(req)));
  });

  router.add('DELETE', '/api/v1/devices/:id', async ({ res, params }) => {
    const deviceId = deviceParam(params.id!);
    await deps.tracker.idle(); // reports already received are recorded first
    sendJson(res, 200, await decommissionDevice(deps, deviceId));
  });

  router.add('POST', '/api/v1/devices/:id/revoke', async ({ res, params }) => {
    sendJson(res, 200, await deps.registry.revoke(deviceParam(params.id!)));
  });

  router.add('POST', '/api/v1/deployments', async ({ req, res, audit }) => {
    const body = await readJson(req);
    const fields = ['devices', 'artifact', 'description', 'allowDowngrade'];
    // a field this route does not take (a dry run, a plan) must not be dropped silently: it would deploy at once
    refuseUnknownFields(body, fields, { hint: '; a job with a plan, or a dry run: POST /api/v1/jobs, /api/v1/jobs/preview' });
    const devices = body.devices;
    const artifact = body.artifact;
    if (!Array.isArray(devices)) throw new UpdraftError('BAD_REQUEST', 'devices must be an array of device ids');
    if (typeof artifact !== 'string') throw new UpdraftError('BAD_REQUEST', 'artifact must be a string like fw@2.0.0');
    if (body.allowDowngrade !== undefined && typeof body.allowDowngrade !== 'boolean') throw new UpdraftError('BAD_REQUEST', 'allowDowngrade must be true or false');
    const request = {
      devices: devices as string[],
      artifact,
      // checked by the service (a string of at most 1000 characters, as a job's)
      ...(body.description !== undefined ? { description: body.description as string } : {}),
      ...(body.allowDowngrade === true ? { allowDowngrade: true } : {}),
    };
    // with an Idempotency-Key (idempotency-key.ts): created once; the key's job answered again (200, Idempotent-Replayed) to a retry
    const claim = idempotencyClaim(req, '/api/v1/deployments', body);
    const { value: result, replayed } = await answerCreation(res, () => deps.deployments.deployWithKey(request, claim));
    Object.assign(audit, { jobId: result.job.jobId, artifact: `${result.job.artifactName}@${result.job.artifactVersion}`, devices: devices.length, ...(replayed ? { replayed: true } : {}) });
  });

  // GET /api/v1/jobs/:id and the other rollout routes: job-routes.ts
}
