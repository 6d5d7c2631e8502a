/**
 * The OpenAPI 3.1 document of the operator API, served at `GET /api/v1/openapi.json`.
 * Kept beside the routes: a route added without a line here is a route undocumented.
 */

type Obj = Record<string, unknown>;

const ref = (name: string): Obj => ({ $ref: `#/components/schemas/${name}` });
const json = (schema: Obj, description = 'OK'): Obj => ({ description, content: { 'application/json': { schema } } });
const errors: Obj = {
  '400': json(ref('Error'), 'Bad request: the message names the field (and, for queries, the position)'),
  '401': json(ref('Error'), 'Missing or wrong operator token'),
  '404': json(ref('Error'), 'Not found'),
  '409': json(ref('Error'), 'Conflict (state does not allow it, or the name is taken)'),
};
const page = (item: Obj): Obj => ({ type: 'object', required: ['items'], properties: { items: { type: 'array', items: item }, next: { type: 'string', description: 'cursor of the next page (pass as after)' } } });
const pageParams: Obj[] = [
  { name: 'limit', in: 'query', schema: { type: 'integer', minimum: 1, maximum: 1000, default: 100 } },
  { name: 'after', in: 'query', schema: { type: 'string' }, description: 'the next cursor of the previous page' },
];
const idParam = (name: string): Obj => ({ name, in: 'path', required: true, schema: { type: 'string' } });
/** The device search's filters: /fleet/search and /fleet/search/count take the same. */
const searchFilterParams: Obj[] = [
  { name: 'id', in: 'query', schema: { type: 'string' }, description: 'case-insensitive substring of the device id' },
  { name: 'tag', in: 'query', schema: { type: 'string' } },
  { name: 'group', in: 'query', schema: { type: 'string' } },
  { name: 'version', in: 'query', schema: { type: 'string' }, description: 'reported software version' },
  {
    name: 'state',
    in: 'query',
    schema: { enum: ['online', 'offline', 'updating', 'failed', 'revoked'] },
    description: 'updating: a command not answered yet, or DOWNLOADING, VERIFYING or INSTALLING reported; failed: FAILURE reported (a failed device is not updating, though its desired software still names the build)',
  },
];
/** A fleet query as taken by a group, a job's targets and ?query=: never empty or blank (parseQuery's 400). */
const fleetQuery = (extra: Obj = {}): Obj => ({ type: 'string', minLength: 1, pattern: '\\S', description: 'a fleet query (docs/rollouts.md); an empty or blank one is refused: 400 "invalid query: it is empty"', ...extra });
/** The 400 of a route that takes a fleet query, saying why it is given. */
const queryRefused = json(ref('Error'), 'Bad request: an invalid query ("invalid query at position N: ...") or an empty or blank one ("invalid query: it is empty"); the message names any other field');
const op = (summary: string, responses: Obj, extra: Obj = {}, errorsOf: Obj = {}): Obj => ({ summary, responses: { ...responses, ...errors, ...errorsOf }, ...extra });
/** A revocation's or a new secret's answer: `disconnected` counts the connections closed (null: an external broker's, closed when it reloads its password file: `mosquitto-config --watch` does that within seconds). */
const cutOffAnswer = (properties: Obj): Obj => ({ type: 'object', properties: { ...properties, disconnected: { type: ['integer', 'null'] } } });
const body = (schema: Obj): Obj => ({ requestBody: { required: true, content: { 'application/json': { schema } } } });

/** The Idempotency-Key of the creating routes (http/idempotency-key.ts, draft-ietf-httpapi-idempotency-key-header). */
const keyParam: Obj = {
  parameters: [
    {
      name: 'Idempotency-Key',
      in: 'header',
      schema: { type: 'string', minLength: 1, maxLength: 255, pattern: '^[\\x21-\\x7E]+$' },
      description: 'a key of the client\'s (e.g. a random UUID), the same for every try of one request: the job is created once; a later request with the key and the same route and body is answered with that job (200, Idempotent-Replayed: true), creating nothing. Plain or a quoted structured-field string. A deleted job frees its key',
    },
  ],
};
/** The answer to a request whose key's job exists: that job, nothing created. */
const replayedAnswer = (content: Obj): Obj => ({ '200': { ...content, description: "the Idempotency-Key's job, created by an earlier request with the same key and body: nothing created (header Idempotent-Replayed: true)", headers: { 'Idempotent-Replayed': { schema: { const: 'true' } } } } });
/** What a key refuses: another request's (422), its job still being created (409, Retry-After). */
const keyErrors: Obj = {
  '409': { description: 'the Idempotency-Key\'s first request is still creating its job: retry after Retry-After', content: { 'application/json': { schema: ref('Error') } } },
  '422': { description: 'the Idempotency-Key was used with another route or body', content: { 'application/json': { schema: ref('Error') } } },
};

const executionStates = ['QUEUED', 'IN_PROGRESS', 'SUCCEEDED', 'FAILED', 'TIMED_OUT', 'REJECTED', 'CANCELED', 'REMOVED'];
const jobStates = ['SCHEDULED', 'IN_PROGRESS', 'PAUSED', 'COMPLETED', 'CANCELED', 'ABORTED'];

const schemas: Obj = {
  Error: { type: 'object', properties: { error: { type: 'object', properties: { code: { type: 'string' }, message: { type: 'string' } } } } },
  Artifact: {
    type: 'object',
    properties: {
      name: { type: 'string' },
      version: { type: 'string' },
      sha256: { type: 'string' },
      size: { type: 'integer' },
      createdAt: { type: 'integer' },
      signature: { type: 'string', description: '<keyId>:<base64 Ed25519>' },
      signatureStatus: { enum: ['valid', 'invalid', 'previous_key', 'unsigned'], description: 'in the list: valid when signed by the current signing key; previous_key when signed by a key it replaced (still deployable: commands are signed when sent)' },
      compatibility: { type: 'object', description: 'what it may be installed on, carried signed in every command and checked by the agent', properties: { deviceTypes: { type: 'array', items: { type: 'string' } }, requires: { type: 'string', description: 'comparators all of which the running version must satisfy, e.g. ">=2.5.0 <3.0.0"' } } },
    },
  },
  Targets: {
    type: 'object',
    description: 'the union of the listed devices, the groups\' members and the query\'s matches; at least one is required',
    properties: { devices: { type: 'array', items: { type: 'string' } }, groups: { type: 'array', items: { type: 'string' } }, query: fleetQuery({ example: 'reported.software.version < 2.0.0 and tags.region = eu' }) },
  },
  Wave: {
    type: 'object',
    properties: {
      count: { type: 'integer', minimum: 1, description: 'devices in this wave' },
      percent: { type: 'number', exclusiveMinimum: 0, maximum: 100, description: 'cumulative share of all targets reached by the end of this wave' },
      successThreshold: { type: 'number', minimum: 0, maximum: 100, default: 0 },
      requireApproval: { type: 'boolean', default: false },
    },
  },
  DeviceRegistration: {
    type: 'object',
    required: ['deviceId'],
    additionalProperties: false,
    properties: { deviceId: { type: 'string' }, attributes: { type: 'object', additionalProperties: { type: ['string', 'number', 'boolean'] } }, tags: { type: 'array', items: { type: 'string' } } },
  },
  NamedTokenRequest: { type: 'object', required: ['name'], additionalProperties: false, properties: { name: { type: 'string' }, expiresInSeconds: { type: 'integer', minimum: 1, maximum: 315360000, description: 'refused from then on; absent: never' } } },
  JobRequest: {
    type: 'object',
    required: ['artifact', 'targets'],
    properties: {
      artifact: { type: 'string', example: 'fw@2.0.0' },
      description: { type: 'string', maxLength: 1000 },
      targets: ref('Targets'),
      type: { enum: ['snapshot', 'continuous'], default: 'snapshot' },
      plan: {
        type: 'object',
        properties: {
          waves: { type: 'array', items: ref('Wave'), minItems: 1, maxItems: 20 },
          maxPerMinute: { type: 'integer', minimum: 1 },
          maxInFlight: { type: 'integer', minimum: 1, description: 'most devices with a command and no outcome yet' },
          rampUp: { type: 'object', properties: { initialPerMinute: { type: 'integer', minimum: 1 }, factor: { type: 'number', minimum: 1, maximum: 100 } } },
          startAt: { type: 'string', format: 'date-time' },
          windows: {
            type: 'array',
            minItems: 1,
            maxItems: 20,
            description: 'maintenance windows: commands are sent only inside them',
            items: { type: 'object', required: ['start', 'minutes'], properties: { start: { type: 'string', pattern: '^([01][0-9]|2[0-3]):[0-5][0-9]$' }, minutes: { type: 'integer', minimum: 1, maximum: 1440 }, days: { type: 'array', items: { enum: ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'] } } } },
          },
          timeZone: { type: 'string', description: 'IANA time zone of windows (default UTC), or "device": each device\'s own (commands are sent at any time; each agent installs when a window is open where it is)' },
        },
      },
      abort: {
        type: 'object',
        properties: {
          rules: { type: 'array', items: { type: 'object', properties: { type: { enum: ['FAILED', 'TIMED_OUT', 'REJECTED', 'ANY'] }, thresholdPercent: { type: 'number' }, minFinished: { type: 'integer' } } } },
          rollback: { type: 'boolean' },
        },
      },
      timeouts: { type: 'object', properties: { inProgressSeconds: { type: 'number' }, stepSeconds: { type: 'number' } } },
      retries: { type: 'object', properties: { limit: { type: 'integer', minimum: 0, maximum: 10 }, on: { type: 'array', items: { enum: ['FAILED', 'TIMED_OUT'] } } } },
      allowDowngrade: { type: 'boolean', default: false },
    },
  },
  Job: {
    type: 'object',
    properties: {
      jobId: { type: 'string' },
      artifactName: { type: 'string' },
      artifactVersion: { type: 'string' },
      status: { enum: jobStates },
      createdAt: { type: 'integer' },
      description: { type: 'string' },
      spec: { type: 'object' },
      progress: { type: 'object', description: 'wave, total, startedAt, waveStartedAt, rateEpoch, sentSinceEpoch, rateForfeit {epoch, count}, pause {reason, wave, message}, abortReason, finishedAt' },
      updatedAt: { type: 'integer' },
      version: { type: 'integer', description: 'row version, 1 when created' },
    },
  },
  JobLogSummary: {
    type: 'object',
    properties: { jobId: { type: 'string' }, deviceId: { type: 'string' }, agentJobId: { type: 'string', description: 'the job id the device saw (<jobId>.<attempt> for a retry)' }, receivedAt: { type: 'integer', description: 'ms since the epoch' }, dropped: { type: 'integer', description: 'lines the agent dropped between the first ones and the latest' }, lineCount: { type: 'integer' } },
  },
  JobLog: {
    type: 'object',
    properties: { jobId: { type: 'string' }, deviceId: { type: 'string' }, agentJobId: { type: 'string' }, receivedAt: { type: 'integer' }, dropped: { type: 'integer' }, lines: { type: 'array', items: { type: 'string' } } },
  },
  Counts: { type: 'object', additionalProperties: { type: 'integer' }, description: `executions per state: ${executionStates.join(', ')}` },
  JobView: {
    type: 'object',
    properties: {
      job: ref('Job'),
      counts: ref('Counts'),
      waves: { type: 'array', items: { type: 'object', properties: { wave: { type: 'integer' }, counts: ref('Counts') } } },
      total: { type: 'integer' },
      percentDone: { type: 'number' },
      targetsError: { type: 'string', description: 'an unfinished continuous job whose stored query (its own or a dynamic group\'s it targets) this release no longer parses: why, and what to do; it takes no new devices meanwhile' },
      executions: { type: 'array', items: ref('Execution') },
      next: { type: 'string' },
    },
  },
  Execution: {
    type: 'object',
    properties: {
      jobId: { type: 'string' },
      deviceId: { type: 'string' },
      status: { enum: executionStates },
      details: { type: 'object', description: 'agentStatus, version, progress, error, waiting (the install gate put the install off: reason, count, nextCheckInSeconds), previous, attempts[], cancelRequested, rollback, control, statusDetails (the last AWS Jobs statusDetails the device reported: a map of strings), lateSuccess (version, at, and attempt when it was an earlier attempt\'s: the device reported SUCCESS after the execution ended TIMED_OUT or CANCELED, or for a timed-out attempt while its retry stood, kept in that attempts[] entry until the execution ended), timedOut (at, error: on a SUCCEEDED execution, the deadline its attempt missed before its own SUCCESS came in, which ended it in place of the retry), retryNotSent (attempt, at: on a SUCCEEDED execution, its retry was not sent: the reported software of the device showed the SUCCESS of that earlier attempt on the build of the job)' },
      wave: { type: 'integer' },
      attempt: { type: 'integer' },
      queuedAt: { type: 'integer' },
      dispatchedAt: { type: 'integer' },
      dueAt: { type: 'integer' },
      updatedAt: { type: 'integer' },
      version: { type: 'integer', description: 'row version, 1 when created' },
    },
  },
  DeviceHistoryItem: {
    description: "an execution of one of the device's jobs, with the build it installs and the device's log of its failed attempt, if it left one",
    allOf: [
      ref('Execution'),
      {
        type: 'object',
        properties: {
          artifact: { type: ['string', 'null'], description: 'name@version; null when the job is gone' },
          log: { type: 'object', properties: { agentJobId: { type: 'string' }, receivedAt: { type: 'integer' }, lineCount: { type: 'integer' } } },
        },
      },
    ],
  },
  Group: {
    type: 'object',
    description: 'members are counted (size: 0 for a dynamic group), not listed: GET /api/v1/groups/{name} pages them',
    properties: { name: { type: 'string' }, kind: { enum: ['static', 'dynamic'] }, size: { type: 'integer' }, query: { type: 'string' }, description: { type: 'string' }, createdAt: { type: 'integer' }, updatedAt: { type: 'integer' }, version: { type: 'integer' } },
  },
  FleetOverview: {
    type: 'object',
    properties: {
      devices: { type: 'object', properties: { registered: { type: 'integer' }, revoked: { type: 'integer' }, online: { type: 'integer' }, reporting: { type: 'integer' } } },
      versions: { type: 'array', items: { type: 'object', properties: { name: { type: 'string' }, version: { type: 'string' }, devices: { type: 'integer' } } } },
      jobs: { type: 'object', additionalProperties: { type: 'integer' } },
      failing: { type: 'array', description: 'one row per device whose latest outcome is a failure (a later success, a late one included, clears it), naming that job, the latest to fail first (failedAt: when it became a failure; updatedAt: its last change)', items: { type: 'object', properties: { deviceId: { type: 'string' }, jobId: { type: 'string' }, jobDescription: { type: 'string' }, artifact: { type: 'string' }, status: { enum: executionStates }, reason: { type: ['string', 'null'] }, failedAt: { type: 'integer' }, updatedAt: { type: 'integer' } } } },
      generatedAt: { type: 'integer' },
    },
  },
  JobTimeline: {
    type: 'object',
    properties: { jobId: { type: 'string' }, from: { type: 'integer' }, to: { type: 'integer' }, bucketMs: { type: 'integer' }, buckets: { type: 'array', items: { type: 'object', properties: { at: { type: 'integer' }, succeeded: { type: 'integer' }, failed: { type: 'integer' } } } } },
  },
  RecentEvent: {
    type: 'object',
    properties: { seq: { type: 'integer' }, at: { type: 'integer' }, type: { enum: ['job.changed', 'execution.changed', 'device.presence', 'device.credentials'] }, deviceId: { type: 'string' }, jobId: { type: 'string' }, status: { type: 'string', description: 'a job or execution state; ONLINE or OFFLINE (device.presence); REVOKED, REINSTATED or DELETED (device.credentials)' }, previousStatus: { type: 'string' }, reason: { type: 'string' } },
  },
  Device: {
    type: 'object',
    description: 'GET /api/v1/devices lists registrations (attributes, revoked, hasSecret, times, version); the fleet routes list what devices run (online, reported, desired, agent)',
    properties: {
      deviceId: { type: 'string' },
      attributes: { type: 'object' },
      tags: { type: 'array', items: { type: 'string' } },
      revoked: { type: 'boolean' },
      hasSecret: { type: 'boolean', description: 'whether it has a secret (never the secret or its hash)' },
      createdAt: { type: 'integer' },
      updatedAt: { type: 'integer' },
      version: { type: 'integer', description: 'row version' },
      online: { type: 'boolean' },
      reported: { type: ['object', 'null'] },
      desired: { type: ['object', 'null'] },
      agent: { type: ['object', 'null'], description: 'what its agent says of itself: trust, time zone, features, certificate expiry and renewal' },
    },
  },
};

/** The document. */
export function openApiDocument(): Obj {
  return {
    openapi: '3.1.0',
    info: { title: 'Updraft operator API', version: '1', description: 'Self-hosted OTA updates: artifacts, devices, groups, rollout jobs, fleet view, live events. Every call needs `Authorization: Bearer <token>`: the operator token, or a read-only viewer token (GET and HEAD, the event stream, a job\'s dry run; 403 for the rest).' },
    components: { securitySchemes: { operatorToken: { type: 'http', scheme: 'bearer' } }, schemas },
    security: [{ operatorToken: [] }],
    paths: {
      '/api/v1/openapi.json': { get: op('This document', { '200': json({ type: 'object' }) }) },
      '/api/v1/artifacts': {
        get: op(
          'Artifacts, newest first (created, then the later added first), and the largest build the server takes: a page when limit or after is given; with neither, every artifact (as before 2026-12-05, for clients that know no next)',
          {
            '200': json({
              type: 'object',
              required: ['items', 'maxArtifactBytes'],
              properties: {
                items: { type: 'array', items: ref('Artifact') },
                next: { type: 'string', description: 'cursor of the next (older) page (pass as after); absent on the last page' },
                maxArtifactBytes: { type: 'integer', description: 'an upload over it is refused (413); in every page, so `?limit=1` is enough to learn it' },
              },
            }),
          },
          { parameters: [...pageParams, { name: 'name', in: 'query', schema: { type: 'string', minLength: 1 }, description: "only this name's versions (exact match); an empty name is refused (400)" }] },
        ),
        post: op('Upload a build (raw bytes)', { '201': json(ref('Artifact')) }, {
          parameters: [
            { name: 'name', in: 'query', required: true, schema: { type: 'string' } },
            { name: 'version', in: 'query', required: true, schema: { type: 'string' } },
            { name: 'deviceTypes', in: 'query', schema: { type: 'string' }, description: 'comma-separated device types the build is made for' },
            { name: 'requires', in: 'query', schema: { type: 'string' }, description: 'the versions it may be installed over, e.g. >=2.5.0' },
          ],
          requestBody: { required: true, content: { 'application/octet-stream': { schema: { type: 'string', format: 'binary' } } } },
        }),
      },
      '/api/v1/artifacts/{name}/{version}': {
        get: op('One artifact', { '200': json(ref('Artifact')) }, { parameters: [idParam('name'), idParam('version')] }),
        delete: op('Delete an artifact (409 while a job that is not finished installs it), and its bytes unless another artifact holds the same ones', { '200': json({ type: 'object', properties: { artifact: ref('Artifact'), bytesDeleted: { type: 'boolean' } } }) }, { parameters: [idParam('name'), idParam('version')] }),
      },
      '/api/v1/devices': {
        get: op('List devices', { '200': json(page(ref('Device'))) }, { parameters: pageParams }),
        post: op('Register a device; the secret is returned once', { '201': json({ type: 'object' }) }, body(ref('DeviceRegistration'))),
      },
      '/api/v1/devices/bulk': { post: op('Register up to 10,000 devices, all or nothing (409 naming ids already registered); the answer holds each secret, shown once', { '201': json({ type: 'object' }) }, body({ type: 'object', required: ['devices'], properties: { devices: { type: 'array', items: ref('DeviceRegistration'), minItems: 1, maxItems: 10000 } } })) },
      '/api/v1/devices/{id}/history': { get: op("A page of a device's jobs and outcomes, newest first; `log` (agentJobId, receivedAt, lineCount) on those whose failed attempt left a log", { '200': json({ type: 'object', required: ['deviceId', 'items'], properties: { deviceId: { type: 'string' }, items: { type: 'array', items: ref('DeviceHistoryItem') }, next: { type: 'string', description: 'cursor of the next (older) page (pass as after)' } } }) }, { parameters: [idParam('id'), ...pageParams] }) },
      '/api/v1/devices/{id}': {
        get: op("A device: shadow (desired, reported, delta), executions, and its logs of failed attempts without their lines (jobLogs, newest first, at most 100)", { '200': json({ type: 'object', properties: { deviceId: { type: 'string' }, device: { type: 'object', description: 'its registration (attributes, tags, revocation, hasSecret; never the secret or its hash)' }, online: { type: 'boolean' }, shadow: { type: ['object', 'null'] }, executions: { type: 'array', items: ref('Execution'), description: 'its newest 100 jobs, newest first' }, executionsNext: { type: 'string', description: 'present when it has older jobs: the after cursor of GET /api/v1/devices/{id}/history' }, jobLogs: { type: 'array', items: ref('JobLogSummary') } } }) }, { parameters: [idParam('id')] }),
        delete: op('Decommission a device: revoked and disconnected, its unfinished executions REMOVED, its shadows and static group memberships deleted, then its registration', {
          '200': json({ type: 'object', properties: { deviceId: { type: 'string' }, disconnected: { type: ['integer', 'null'] }, executionsRemoved: { type: 'array', items: { type: 'string' } }, shadowsDeleted: { type: 'array', items: { type: 'string' } }, groupsLeft: { type: 'array', items: { type: 'string' } } } }),
        }, { parameters: [idParam('id')] }),
        patch: op("Change a device's attributes (merged; a null value removes its key) and tags (replaced); continuous jobs pick up a device that now matches", { '200': json({ type: 'object', description: 'its registration (attributes, tags, revocation, hasSecret; never the secret or its hash)' }) }, {
          parameters: [idParam('id')],
          ...body({ type: 'object', additionalProperties: false, properties: { attributes: { type: 'object', additionalProperties: { type: ['string', 'number', 'boolean', 'null'] } }, tags: { type: 'array', items: { type: 'string' } } } }),
        }),
      },
      '/api/v1/devices/{id}/rotate-secret': { post: op('Issue a new device secret: the old one is refused, and the connection it opened is closed', { '200': json(cutOffAnswer({ secret: { type: 'string' } })) }, { parameters: [idParam('id')] }) },
      '/api/v1/devices/{id}/revoke': { post: op('Revoke a device: refused at CONNECT and download, and the connection it holds is closed', { '200': json(cutOffAnswer({ device: { type: 'object' } })) }, { parameters: [idParam('id')] }) },
      '/api/v1/devices/{id}/reinstate': { post: op('Lift a revocation (wasRevoked false: it was not revoked, and nothing changed); jobsRequeued: the running jobs that take it back', { '200': json({ type: 'object', properties: { device: { type: 'object' }, wasRevoked: { type: 'boolean' }, jobsRequeued: { type: 'array', items: { type: 'string' } } } }) }, { parameters: [idParam('id')] }) },
      '/api/v1/deployments': {
        post: op('Deploy an artifact to devices now (a single-wave job); with an Idempotency-Key, once per key', { '201': json({ type: 'object' }), ...replayedAnswer(json({ type: 'object' })) }, { ...keyParam, ...body({ type: 'object', required: ['devices', 'artifact'], additionalProperties: false, properties: { devices: { type: 'array', items: { type: 'string' } }, artifact: { type: 'string' }, description: { type: 'string', maxLength: 1000 }, allowDowngrade: { type: 'boolean' } } }) }, keyErrors),
      },
      '/api/v1/jobs': {
        get: op('List jobs, newest first, without their specs (GET /api/v1/jobs/{id} has the spec)', { '200': json(page(ref('Job'))) }, { parameters: [...pageParams, { name: 'status', in: 'query', schema: { type: 'string' }, description: `comma-separated: ${jobStates.join(', ')}` }] }),
        post: op('Create a rollout job; with an Idempotency-Key, once per key', { '201': json(ref('JobView')), ...replayedAnswer(json(ref('JobView'))) }, { ...keyParam, ...body(ref('JobRequest')) }, keyErrors),
      },
      '/api/v1/jobs/preview': {
        post: op(
          'What a job would do, nothing created: its targets per wave (with the first devices), when sending starts (scheduled start, then maintenance windows), the least time its rate needs, and the devices it would skip; refused as a creation would be',
          {
            '200': json({
              type: 'object',
              properties: {
                artifact: { type: 'string' },
                type: { enum: ['snapshot', 'continuous'] },
                total: { type: 'integer' },
                waves: { type: 'array', items: { type: 'object', properties: { wave: { type: 'integer' }, devices: { type: 'integer' }, first: { type: 'array', items: { type: 'string' } } } } },
                startsAt: { type: 'integer', description: 'milliseconds since the epoch' },
                minSendMinutes: { type: 'integer' },
                skipped: { type: 'object', description: 'of the first 2,000 targets (scanned), those the engine would skip (REJECTED, nothing sent) by what they reported: a lower version than they run (downgrade) or a build that does not fit them (incompatible), the first five with the reason', properties: { scanned: { type: 'integer' }, downgrade: { type: 'integer' }, incompatible: { type: 'integer' }, first: { type: 'array', items: { type: 'object', properties: { deviceId: { type: 'string' }, error: { type: 'string' } } } } } },
              },
            }),
          },
          body(ref('JobRequest')),
        ),
      },
      '/api/v1/jobs/{id}': {
        get: op('A job: counts per state and wave, progress, the first page of executions', { '200': json(ref('JobView')) }, { parameters: [idParam('id'), ...pageParams] }),
        delete: op(
          "Delete a finished job (COMPLETED, CANCELED or ABORTED) with everything kept under its id: its executions (removed in pieces), their counts, its devices' logs and its webhook deliveries still waiting. 409 for a job not finished (cancel it first), or one whose devices are still being stopped, installing or owed the take-back of its command (try again once they have finished). Devices keep what they report of it; their histories no longer list it",
          { '200': json({ type: 'object', required: ['deleted'], properties: { deleted: ref('Job') } }) },
          { parameters: [idParam('id')] },
        ),
      },
      '/api/v1/jobs/{id}/executions': {
        get: op('A job\'s executions by device id', { '200': json(page(ref('Execution'))) }, { parameters: [idParam('id'), ...pageParams, { name: 'status', in: 'query', schema: { type: 'string' } }] }),
      },
      '/api/v1/jobs/{id}/logs': {
        get: op("The devices' logs of failed attempts this job keeps, by device id, without their lines", { '200': json(page(ref('JobLogSummary'))) }, { parameters: [idParam('id'), ...pageParams] }),
      },
      '/api/v1/jobs/{id}/logs/{deviceId}': {
        get: op("A device's log of its failed attempt of this job (404 when it sent none)", { '200': json(ref('JobLog')) }, { parameters: [idParam('id'), idParam('deviceId')] }),
      },
      '/api/v1/jobs/{id}/pause': { post: op('Pause sending', { '200': json(ref('JobView')) }, { parameters: [idParam('id')] }) },
      '/api/v1/jobs/{id}/resume': { post: op('Resume (approves the next wave after a threshold or approval pause)', { '200': json(ref('JobView')) }, { parameters: [idParam('id')] }) },
      '/api/v1/jobs/{id}/cancel': { post: op('Cancel: queued executions end CANCELED, devices not yet installing are told to stop', { '200': json(ref('JobView')) }, { parameters: [idParam('id')] }) },
      '/api/v1/groups': {
        get: op('List groups', { '200': json(page(ref('Group'))) }),
        post: op('Create a static (devices) or dynamic (query) group', { '201': json(ref('Group')) }, body({ type: 'object', required: ['name'], additionalProperties: false, properties: { name: { type: 'string' }, devices: { type: 'array', items: { type: 'string' } }, query: fleetQuery(), description: { type: 'string', maxLength: 1000 } } }), { '400': queryRefused }),
      },
      '/api/v1/groups/{name}': {
        get: op("A group and a page of its members; a dynamic group's page reads at most 10,000 devices, so it may be short, even empty: follow next until it is absent", { '200': json({ type: 'object', required: ['group', 'members', 'scanned'], properties: { group: ref('Group'), members: { type: 'array', items: { type: 'string' } }, next: { type: 'string' }, scanned: { type: 'integer', minimum: 0, description: "devices read (matched or not) to answer this page, at most 10,000 (a static group's: its members on the page): a short or empty page with next still shows how far the scan went" } } }) }, { parameters: [idParam('name'), ...pageParams] }, { '409': json(ref('Error'), 'a dynamic group whose stored query this release no longer parses (saved by an earlier one): the message names the group and what to do') }),
        delete: op('Delete a group', { '200': json({ type: 'object' }) }, { parameters: [idParam('name')] }),
      },
      '/api/v1/groups/{name}/members': { post: op('Add and remove members of a static group', { '200': json(ref('Group')) }, { parameters: [idParam('name')], ...body({ type: 'object', properties: { add: { type: 'array', items: { type: 'string' } }, remove: { type: 'array', items: { type: 'string' } } } }) }) },
      '/api/v1/fleet/devices': { get: op('Devices a query selects, with what they run; with a query one call reads at most 10,000 devices, so a page may be short, even empty: follow next until it is absent', { '200': json({ ...page(ref('Device')), required: ['items', 'scanned'], properties: { ...(page(ref('Device')).properties as Obj), scanned: { type: 'integer', minimum: 0, description: 'devices read (matched or not) to answer this page, at most 10,000: a short or empty page with next still shows how far the scan went' } } }) }, { parameters: [...pageParams, { name: 'query', in: 'query', description: 'a fleet query (docs/rollouts.md); absent: every device; present and empty (`?query=`) or blank: 400 "invalid query: it is empty"', schema: fleetQuery() }] }, { '400': queryRefused }) },
      '/api/v1/fleet/versions': { get: op('Devices per reported name@version, from the cached fleet summary (as /fleet/status)', { '200': json({ type: 'object', properties: { items: { type: 'array', items: { type: 'object' } }, generatedAt: { type: 'integer', description: 'when the cached summary was computed (ms since the epoch)' } } }) }) },
      '/api/v1/fleet/status': {
        get: op('Fleet summary: devices, versions, jobs per state; cached, shared with /fleet/overview: at most 2 s old, or ten times what computing it took (docs/api.md)', {
          '200': json({
            type: 'object',
            properties: {
              devices: { type: 'object', properties: { registered: { type: 'integer' }, revoked: { type: 'integer' }, online: { type: 'integer' }, reporting: { type: 'integer' } } },
              versions: { type: 'array', items: { type: 'object', properties: { name: { type: ['string', 'null'] }, version: { type: ['string', 'null'] }, devices: { type: 'integer' } } } },
              jobs: { type: 'object', additionalProperties: { type: 'integer' } },
              generatedAt: { type: 'integer', description: 'when the cached summary was computed (ms since the epoch)' },
            },
          }),
        }),
      },
      '/api/v1/events': {
        get: op('Server-sent events: job.changed, job.deleted ({jobId}: a finished job deleted), execution.changed, job.log, device.presence, artifact.changed ({name, version, change: added or deleted}; not on a stream filtered by jobId or deviceId); device.credentials ({deviceId, change: registered, secret, revoked, reinstated, deleted or unregistered}: a device registered, given a new secret, revoked, reinstated or deleted, or a registration undone) only when named in types. HEAD answers at once with the headers alone', { '200': { description: 'text/event-stream', content: { 'text/event-stream': { schema: { type: 'string' } } } } }, {
          parameters: [
            { name: 'jobId', in: 'query', schema: { type: 'string' } },
            { name: 'deviceId', in: 'query', schema: { type: 'string' } },
            { name: 'types', in: 'query', schema: { type: 'string' } },
            { name: 'changes', in: 'query', schema: { type: 'string' }, description: 'comma-separated: device.credentials events of these changes only (registered, secret, revoked, reinstated, deleted, unregistered); an event relayed from an older instance, without change, is sent' },
          ],
        }),
      },
      '/api/v1/broker/credentials': {
        get: op("What an external broker needs to admit devices: each device's id, revoked, and its secret's Mosquitto $7$ hash (updraft broker mosquitto-config)", { '200': json({ type: 'object', properties: { items: { type: 'array', items: { type: 'object', properties: { deviceId: { type: 'string' }, revoked: { type: 'boolean' }, brokerHash: { type: 'string' } } } }, next: { type: 'string' } } }) }, {
          parameters: [...pageParams, { name: 'ids', in: 'query', schema: { type: 'string' }, description: 'comma-separated device ids (at most 100): those only, the ones not registered left out, no paging' }],
        }),
      },
      '/api/v1/broker/crl': {
        get: op("The crlfile of an external Mosquitto with certificate logins (updraft broker mosquitto-config --updraft-ca): one X.509 v2 CRL (PEM) per CA whose device certificates are accepted, listing the unexpired certificates of deleted devices, signed here with the CA keys, each valid as long as its CA (nextUpdate: the CA's notAfter; thisUpdate a day before its issue), the same list given back while the revocations are the same; the operator token only (403 to a viewer token); 409 when none can be made without locking devices out (a previous CA whose key a rollover before 2026-12-06 deleted)", { '200': json({ type: 'object', properties: { crl: { type: 'string' }, nextUpdate: { type: 'string', format: 'date-time', description: "the earliest CA's notAfter" }, revoked: { type: 'integer' }, cas: { type: 'integer' }, digest: { type: 'string', description: 'SHA-256 of the CAs and serials listed: unchanged while the revocations are' }, issuers: { type: 'array', items: { type: 'string' }, description: 'SHA-256 fingerprints of the CAs a CRL is given for' } } }) }),
      },
      '/api/v1/viewer-tokens': {
        get: op('The read-only viewer tokens, by name (never the tokens); the operator only', { '200': json({ type: 'object', properties: { items: { type: 'array', items: { type: 'object', properties: { name: { type: 'string' }, createdAt: { type: 'integer' } } } } } }) }),
        post: op('A new read-only viewer token {name, expiresInSeconds?}: the token is in the answer only (the store keeps its SHA-256); 409 when the name is taken', { '201': json({ type: 'object', properties: { name: { type: 'string' }, token: { type: 'string' }, createdAt: { type: 'integer' } } }) }, body(ref('NamedTokenRequest'))),
      },
      '/api/v1/operator-tokens': {
        get: op('The named operator tokens, by name (never the tokens), with when each was last used; the operator only', { '200': json({ type: 'object', properties: { items: { type: 'array', items: { type: 'object', properties: { name: { type: 'string' }, createdAt: { type: 'integer' }, lastUsedAt: { type: 'integer' }, expiresAt: { type: 'integer' } } } } } }) }),
        post: op('A new named operator token {name, expiresInSeconds?}, one per person or tool: the token is in the answer only (the store keeps its SHA-256); 409 when the name is taken', { '201': json({ type: 'object', properties: { name: { type: 'string' }, token: { type: 'string' }, createdAt: { type: 'integer' } } }) }, body(ref('NamedTokenRequest'))),
      },
      '/api/v1/operator-tokens/{name}': { delete: op('Removes a named operator token: refused from now on (other instances: at the relayed event, within 30 s)', { '200': json({ type: 'object', properties: { removed: { type: 'string' } } }) }) },
      '/api/v1/operator-token/rotate': { post: op("Replaces the data directory's operator token: the new one is in the answer only, the old one is refused from now on and the operator MQTT connections it opened are closed (409 with an external broker: rotate offline)", { '200': json({ type: 'object', properties: { token: { type: 'string' }, disconnected: { type: ['integer', 'null'] } } }) }) },
      '/api/v1/keys': { get: op('The public keys: the software signing key (with its certificate from the offline root, if any), the root and its rotations, the URL signing keys (ids and dates, never the secrets), and the device CA (with the previous one during a CA rollover)', { '200': json({ type: 'object', properties: { signing: { type: 'object' }, root: { type: ['object', 'null'] }, url: { type: 'array', items: { type: 'object' } }, ca: { type: 'string' }, caSubject: { type: 'string', description: "the device CA's subject DN as agents report the issuer of their client certificate (reported.agent.certificateIssuer): Node's DN lines joined with ', '" }, previousCa: { type: ['string', 'null'], description: 'the CA a rollover replaced (pki/previous-ca.crt), whose device certificates are accepted while it is valid; null without one' }, previousCaSubject: { type: ['string', 'null'], description: 'its subject DN written as caSubject (the fleet query reported.agent.certificateIssuer = "<it>" selects the devices still on it); null without one' }, droppedCaSubject: { type: ['string', 'null'], description: 'the subject DN of the CA the last updraft ca drop-previous removed (pki/previous-ca.crt.dropped), written as caSubject: devices still reporting it are refused at the handshake; null without one' } } }) }) },
      '/api/v1/keys/signing/certificate': { put: op("Installs the offline root's certificate of the software signing key {certificate, rootPublicKey?, rootRotations?} (updraft keys install-cert); update commands carry it from then on", { '200': json({ type: 'object', properties: { certificate: { type: 'object' }, root: { type: 'object' } } }) }, body({ type: 'object', required: ['certificate'], additionalProperties: false, properties: { certificate: { type: 'object' }, rootPublicKey: { type: 'string' }, rootRotations: { type: 'array', items: { type: 'object' } } } })) },
      '/api/v1/keys/url/rotate': { post: op("Puts a new URL signing key in front {retire?, activateInSeconds?}: URLs already issued stay valid; this instance's key ring only (a warning says so on a shared database)", { '200': json({ type: 'object', properties: { keys: { type: 'array', items: { type: 'object' } }, warning: { type: 'string' } } }) }, body({ type: 'object', additionalProperties: false, properties: { retire: { type: 'string' }, activateInSeconds: { type: 'integer', minimum: 0, maximum: 2592000 } } })) },
      '/api/v1/keys/url/retire': { post: op('Retires a URL signing key {kid}: everything it signed is refused from now on', { '200': json({ type: 'object', properties: { keys: { type: 'array', items: { type: 'object' } } } }) }, body({ type: 'object', required: ['kid'], additionalProperties: false, properties: { kid: { type: 'string' } } })) },
      '/api/v1/artifacts/prune': { post: op('Deletes old builds {keep, name?, dryRun?}: the keep newest versions of each name stay, and so do builds an unfinished job installs', { '200': json({ type: 'object' }) }, body({ type: 'object', required: ['keep'], additionalProperties: false, properties: { keep: { type: 'integer', minimum: 1 }, name: { type: 'string' }, dryRun: { type: 'boolean' } } })) },
      '/api/v1/devices/{id}/certificate': { post: op("Issues a client certificate for MQTT over TLS from Updraft's CA: with {csr}, for the device's own key (no private key travels); without a body, with a key made here (in the answer only). 409 for a revoked device (reinstate it first: a new secret does not lift a revocation)", { '201': json({ type: 'object', properties: { deviceId: { type: 'string' }, certificate: { type: 'string' }, privateKey: { type: 'string' }, ca: { type: 'string' } } }) }, { parameters: [idParam('id')], requestBody: { required: false, content: { 'application/json': { schema: { type: 'object', additionalProperties: false, properties: { csr: { type: 'string', description: 'PEM' } } } } } } }) },
      '/api/v1/whoami': { get: op('Who the token is: {role: "operator"} or {role: "viewer", name}', { '200': json({ type: 'object', properties: { role: { enum: ['operator', 'viewer'] }, name: { type: 'string' } } }) }) },
      '/api/v1/viewer-tokens/{name}': { delete: op('Removes a viewer token: refused from now on (other instances: at the relayed event, within 30 s)', { '200': json({ type: 'object', properties: { removed: { type: 'string' } } }) }) },
      '/api/v1/metrics': { get: op('Server counters: MQTT messages and connections, shadow requests and rejections, downloads, process memory, event-loop load; Prometheus text format 0.0.4 when Accept prefers text/plain (docs/deployment.md, Monitoring)', { '200': { description: 'the counters', content: { 'application/json': { schema: { type: 'object' } }, 'text/plain': { schema: { type: 'string' } } } } }) },
      '/api/v1/health/findings': { get: op("updraft doctor's fleet-level findings, computed on the server (health-routes.ts): signing key, staged URL keys, load, CA and TLS expiry, webhooks, artifact storage, the rollouts' leader, devices a fleet query selects (unsigned software, a previous or dropped CA, expiring client certificates, wrong clocks, a replaced root) counted over the whole fleet, rollouts waiting; one computation shared by concurrent requests and kept 30 s (a failed one is not kept); viewer tokens may read it", { '200': json({ type: 'object', required: ['generatedAt', 'keptSeconds', 'scanned', 'findings'], properties: { generatedAt: { type: 'integer', description: 'when the findings were computed, ms since the epoch' }, keptSeconds: { type: 'number', description: 'how long one computation is answered from' }, scanned: { type: 'integer', minimum: 0, description: 'devices read to count the device findings' }, findings: { type: 'array', items: { type: 'object', required: ['verdict', 'check', 'text'], properties: { verdict: { enum: ['ok', 'note', 'warn', 'FAIL'] }, check: { type: 'string' }, text: { type: 'string', description: "the line updraft doctor prints" }, query: { type: 'string', description: 'the fleet query that lists the devices concerned (GET /api/v1/fleet/devices?query=)' }, count: { type: 'integer', minimum: 0, description: 'how many devices it selects (revoked ones apart for the CA checks)' } } } } } }) }) },
      // the dashboard's aggregations (insight-routes.ts): small answers at any fleet size
      '/api/v1/fleet/overview': { get: op('Fleet summary (cached up to 2 s) and the devices with the newest failures across jobs whose latest outcome is still a failure, one row each, with their reasons', { '200': json(ref('FleetOverview')) }) },
      '/api/v1/fleet/search': {
        get: op('Search devices; one call reads at most 10,000 devices, so a page may be short: follow next until it is absent', { '200': json({ ...page(ref('Device')), properties: { ...(page(ref('Device')).properties as Obj), scanned: { type: 'integer', description: 'devices read to answer' } } }) }, {
          parameters: [...pageParams, ...searchFilterParams],
        }),
      },
      '/api/v1/fleet/search/count': {
        get: op('How many devices the search filters match (the same filters as /fleet/search): without filters the registry counted, a static group alone its size, else at most 100,000 devices read; exact false then, total a floor', { '200': json({ type: 'object', properties: { total: { type: 'integer' }, exact: { type: 'boolean' }, scanned: { type: 'integer', description: 'devices read to count (0: counted by the database or the group)' } } }) }, {
          parameters: searchFilterParams,
        }),
      },
      '/api/v1/devices/{id}/events': { get: op('A device\'s last events, newest first: its executions\' steps and outcomes, and presence changes this server saw', { '200': json(page({ type: 'object', properties: { at: { type: 'integer' }, kind: { enum: ['queued', 'sent', 'attempt', 'state', 'presence'] }, jobId: { type: 'string' }, artifact: { type: 'string' }, status: { type: 'string' }, reason: { type: 'string' } } })) }, { parameters: [idParam('id'), { name: 'limit', in: 'query', schema: { type: 'integer', minimum: 1, maximum: 200, default: 30 } }] }) },
      '/api/v1/jobs/{id}/timeline': { get: op('Finished executions per time bucket from the job\'s start to its end (or now)', { '200': json(ref('JobTimeline')) }, { parameters: [idParam('id'), { name: 'buckets', in: 'query', schema: { type: 'integer', minimum: 1, maximum: 500, default: 60 } }] }) },
      '/api/v1/events/recent': {
        get: op('The last events this server saw (in memory, at most 500), newest first', { '200': json(page(ref('RecentEvent'))) }, {
          parameters: [{ name: 'limit', in: 'query', schema: { type: 'integer', minimum: 1, maximum: 500, default: 50 } }, { name: 'deviceId', in: 'query', schema: { type: 'string' } }, { name: 'jobId', in: 'query', schema: { type: 'string' } }],
        }),
      },
    },
  };
}
