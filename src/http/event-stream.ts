/**
 * `GET /api/v1/events`: a server-sent events stream (text/event-stream) of job and device
 * events for live views: `job.changed`, `execution.changed`, `device.presence`. Filters:
 * `?jobId=` (job and execution events of one job), `?deviceId=`, `?types=a,b`. A comment
 * line every 15 s keeps proxies from closing an idle stream.
 */
import { UpdraftError } from '../errors.ts';
import type { EventBus } from '../events/event-bus.ts';
import type { Router } from './router.ts';

const TYPES = ['job.changed', 'execution.changed', 'device.presence'] as const;
type StreamType = (typeof TYPES)[number];
const HEARTBEAT_MS = 15_000;

/** Adds the event stream route. */
export function addEventStream(router: Router, deps: { events: EventBus }): void {
  router.add('GET', '/api/v1/events', async ({ req, res, url }) => {
    const rawTypes = url.searchParams.get('types');
    const types = rawTypes ? rawTypes.split(',').map((t) => t.trim()) : [...TYPES];
    const unknown = types.find((t) => !(TYPES as readonly string[]).includes(t));
    if (unknown !== undefined) throw new UpdraftError('BAD_REQUEST', `types must be a comma-separated list of ${TYPES.join(', ')}; got ${unknown}`);
    const jobId = url.searchParams.get('jobId');
    const deviceId = url.searchParams.get('deviceId');
    res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-store', connection: 'keep-alive', 'x-accel-buffering': 'no' });
    res.write(': updraft events\n\n');
    let id = 0;
    const send = (type: StreamType, data: unknown) => {
      if (!res.writableEnded) res.write(`id: ${++id}\nevent: ${type}\ndata: ${JSON.stringify(data)}\n\n`);
    };
    const offs: (() => void)[] = [];
    if (types.includes('job.changed')) {
      offs.push(deps.events.on('job.changed', ({ job }) => {
        if (deviceId || (jobId && job.jobId !== jobId)) return;
        const { spec: _spec, ...rest } = job;
        send('job.changed', rest);
      }));
    }
    if (types.includes('execution.changed')) {
      offs.push(deps.events.on('execution.changed', ({ previous, current }) => {
        if ((jobId && current.jobId !== jobId) || (deviceId && current.deviceId !== deviceId)) return;
        send('execution.changed', { ...current, previousStatus: previous?.status ?? null });
      }));
    }
    if (types.includes('device.presence')) {
      offs.push(deps.events.on('device.presence', (e) => {
        if (jobId || (deviceId && e.deviceId !== deviceId)) return;
        send('device.presence', e);
      }));
    }
    const heartbeat = setInterval(() => res.write(': keep-alive\n\n'), HEARTBEAT_MS);
    heartbeat.unref();
    await new Promise<void>((resolve) => {
      const done = () => {
        clearInterval(heartbeat);
        for (const off of offs) off();
        resolve();
      };
      req.on('close', done);
      res.on('close', done);
    });
  });
}
