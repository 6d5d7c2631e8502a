/**
 * `GET /api/v1/events`: a server-sent events stream (text/event-stream) of job and device
 * events for live views: `job.changed`, `job.deleted` (`{jobId}`: a finished job deleted, lists
 * drop it), `execution.changed`, `job.log`, `device.presence`,
 * `artifact.changed` (a build added or deleted: the artifact list and the rollout form), and when
 * asked for by `?types=` only, `device.credentials` (a device registered, revoked,
 * reinstated, deleted or given a new secret: what a broker password file follows, and the
 * device and devices pages). Filters: `?jobId=` (job and execution events of one job), `?deviceId=`,
 * `?types=a,b`, `?changes=revoked,deleted` (device.credentials events of those changes only). A comment line every 15 s keeps proxies from closing an idle stream. `HEAD`
 * answers the headers alone, at once.
 *
 * Backpressure: a client that does not read (a stalled network, a suspended laptop, a pipe
 * into a pager) is cut off once `maxBacklogBytes` wait for its socket, rather than the server
 * holding its backlog without bound: a rollout of 100,000 devices makes some 300,000
 * execution events, about 120 MB. The dashboard reconnects and reads the state afresh.
 */
import { UpdraftError } from '../errors.ts';
import type { CredentialsChange, EventBus } from '../events/event-bus.ts';
import { silentLogger, type Logger } from '../util/logger.ts';
import type { Router } from './router.ts';

/** The `change` of a device.credentials event (events/event-bus.ts CredentialsChange), for `?changes=`. */
const CREDENTIALS_CHANGES = ['registered', 'secret', 'revoked', 'reinstated', 'deleted', 'unregistered'] as const satisfies readonly CredentialsChange[];

const TYPES = ['job.changed', 'job.deleted', 'execution.changed', 'job.log', 'device.presence', 'artifact.changed', 'device.credentials'] as const;
/** What a stream without `?types=` carries. */
const DEFAULT_TYPES: readonly StreamType[] = ['job.changed', 'job.deleted', 'execution.changed', 'job.log', 'device.presence', 'artifact.changed'];
type StreamType = (typeof TYPES)[number];
const HEARTBEAT_MS = 15_000;
/** Bytes a stream may have waiting for its client's socket before the stream is cut. */
export const MAX_BACKLOG_BYTES = 4 << 20;

/** Adds the event stream route. */
export function addEventStream(router: Router, deps: { events: EventBus; logger?: Logger; maxBacklogBytes?: number }): void {
  const logger = deps.logger ?? silentLogger;
  const maxBacklog = deps.maxBacklogBytes ?? MAX_BACKLOG_BYTES;
  router.add('GET', '/api/v1/events', async ({ req, res, url, caller }) => {
    const rawTypes = url.searchParams.get('types');
    const types = rawTypes ? rawTypes.split(',').map((t) => t.trim()) : [...DEFAULT_TYPES];
    const unknown = types.find((t) => !(TYPES as readonly string[]).includes(t));
    if (unknown !== undefined) throw new UpdraftError('BAD_REQUEST', `types must be a comma-separated list of ${TYPES.join(', ')}; got ${unknown}`);
    const jobId = url.searchParams.get('jobId');
    const deviceId = url.searchParams.get('deviceId');
    // device.credentials of these changes only (the overview's revocations): a bulk
    // registration of 100,000 devices sent each open overview 100,000 events (review of ea04977)
    const rawChanges = url.searchParams.get('changes');
    const changes = rawChanges ? rawChanges.split(',').map((c) => c.trim()) : undefined;
    const badChange = changes?.find((c) => !(CREDENTIALS_CHANGES as readonly string[]).includes(c));
    if (badChange !== undefined) throw new UpdraftError('BAD_REQUEST', `changes must be a comma-separated list of ${CREDENTIALS_CHANGES.join(', ')}; got ${badChange}`);
    res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-store', connection: 'keep-alive', 'x-accel-buffering': 'no' });
    // HEAD (the router gives it GET's handler): the stream's headers, then the end. A HEAD
    // answer is a GET's header fields without content (RFC 9110 §9.3.2), and a stream's are
    // known at once; Node drops a HEAD answer's body writes, so held open like a stream its
    // headers were never even sent, and it never answered. Not 405 with Allow: GET: HEAD
    // works on every other read, and here it checks the URL, the token and the filters (a bad
    // `types` is 400 as on GET) without holding a stream open
    if (req.method === 'HEAD') {
      res.end();
      return;
    }
    res.write(': updraft events\n\n');
    let id = 0;
    const send = (type: StreamType, data: unknown) => {
      if (res.writableEnded || res.destroyed) return;
      if (res.writableLength > maxBacklog) {
        logger.warn('event stream cut: its client does not keep up', { backlogBytes: res.writableLength, remote: req.socket?.remoteAddress });
        res.destroy(); // 'close' below unsubscribes
        return;
      }
      res.write(`id: ${++id}\nevent: ${type}\ndata: ${JSON.stringify(data)}\n\n`);
    };
    const offs: (() => void)[] = [];
    // opened with the data directory's operator token, replaced since: sign in again
    if (caller?.name === undefined) offs.push(deps.events.on('operator.token-rotated', () => res.end()));
    // opened with a named token that was removed (or replaced under its name)
    else offs.push(deps.events.on(caller.role === 'viewer' ? 'viewer.tokens' : 'operator.tokens', ({ name }) => name === caller.name && res.end()));
    if (types.includes('job.changed')) {
      offs.push(deps.events.on('job.changed', ({ job }) => {
        if (deviceId || (jobId && job.jobId !== jobId)) return;
        const { spec: _spec, ...rest } = job;
        send('job.changed', rest);
      }));
    }
    if (types.includes('job.deleted')) {
      offs.push(deps.events.on('job.deleted', (e) => {
        if (deviceId || (jobId && e.jobId !== jobId)) return;
        send('job.deleted', e);
      }));
    }
    if (types.includes('execution.changed')) {
      offs.push(deps.events.on('execution.changed', ({ previous, current }) => {
        if ((jobId && current.jobId !== jobId) || (deviceId && current.deviceId !== deviceId)) return;
        send('execution.changed', { ...current, previousStatus: previous?.status ?? null });
      }));
    }
    if (types.includes('job.log')) {
      offs.push(deps.events.on('job.log', (e) => {
        if ((jobId && e.jobId !== jobId) || (deviceId && e.deviceId !== deviceId)) return;
        send('job.log', e);
      }));
    }
    if (types.includes('device.presence')) {
      offs.push(deps.events.on('device.presence', (e) => {
        if (jobId || (deviceId && e.deviceId !== deviceId)) return;
        send('device.presence', e);
      }));
    }
    if (types.includes('artifact.changed')) {
      // about no job or device: a stream filtered to one does not carry it
      offs.push(deps.events.on('artifact.changed', (e) => {
        if (jobId || deviceId) return;
        send('artifact.changed', e);
      }));
    }
    if (types.includes('device.credentials')) {
      offs.push(deps.events.on('device.credentials', (e) => {
        if (jobId || (deviceId && e.deviceId !== deviceId)) return;
        // an event without `change` (relayed from an older instance) is sent: it may be any
        if (changes && e.change !== undefined && !changes.includes(e.change)) return;
        send('device.credentials', e);
      }));
    }
    const heartbeat = setInterval(() => res.write(': keep-alive\n\n'), HEARTBEAT_MS);
    heartbeat.unref();
    // opened with a named token that expires: it ends then (a reconnection is refused); a
    // timer holds at most 24.8 days, and a stream open longer than that is not worth one
    const untilExpiry = caller?.expiresAt !== undefined ? Math.max(0, caller.expiresAt - Date.now()) : undefined;
    const expiry = untilExpiry !== undefined && untilExpiry < 2 ** 31 - 1 ? setTimeout(() => res.end(), untilExpiry) : undefined;
    expiry?.unref();
    await new Promise<void>((resolve) => {
      const done = () => {
        clearInterval(heartbeat);
        clearTimeout(expiry);
        for (const off of offs) off();
        resolve();
      };
      req.on('close', done);
      res.on('close', done);
    });
  });
}
