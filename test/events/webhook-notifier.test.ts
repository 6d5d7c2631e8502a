/**
 * Rollout state changes POSTed to the operator's endpoint: a real server with
 * `--webhook-url`, a real HTTP receiver, a real agent. Deliveries are signed, in order,
 * retried after a 5xx with the same delivery id, and only news: a job's progress within one
 * state sends nothing.
 */
import assert from 'node:assert/strict';
import { createHmac, randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { UpdateAgent } from '../../src/agent/agent.ts';
import { EventBus } from '../../src/events/event-bus.ts';
import { WebhookNotifier, type WebhookDelivery } from '../../src/events/webhook-notifier.ts';
import type { JobRecord } from '../../src/store/state-store.ts';
import type { SqliteStore } from '../../src/store/sqlite-store.ts';
import { silentLogger } from '../../src/util/logger.ts';
import { eventually } from '../helpers/cli.ts';
import { registerDevice, startTestServer, type TestServer } from '../helpers/server.ts';
import { startTempStore } from '../helpers/sqlite.ts';
import { addArtifact, outcome, startAgent } from '../security/support.ts';

const SECRET = 'hook-secret-for-tests';

describe('webhook notifications of rollouts', () => {
  let receiver: http.Server;
  let ts: TestServer;
  let root: string;
  let agent: UpdateAgent | undefined;
  const got: { headers: http.IncomingHttpHeaders; body: string }[] = [];
  /** Answers to give, first first; then 204. */
  const answers: number[] = [];

  before(async () => {
    receiver = http.createServer((req, res) => {
      let body = '';
      req.on('data', (c) => (body += c));
      req.on('end', () => {
        got.push({ headers: req.headers, body });
        res.writeHead(answers.shift() ?? 204).end();
      });
    });
    await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hooks/updraft`;
    ts = await startTestServer({ flags: { 'webhook-url': url, 'webhook-secret': SECRET } });
    root = await mkdtemp(path.join(os.tmpdir(), 'updraft-hook-'));
    await addArtifact(ts, '2.0.0', randomBytes(5000));
  });
  after(async () => {
    await agent?.stop();
    await ts?.close();
    await new Promise((r) => receiver.close(r));
    await rm(root, { recursive: true, force: true });
  });

  const api = async (method: string, route: string, body?: unknown) => {
    const res = await fetch(ts.httpUrl + route, { method, headers: { authorization: `Bearer ${ts.token}`, 'content-type': 'application/json' }, ...(body ? { body: JSON.stringify(body) } : {}) });
    assert.ok(res.ok, `${method} ${route}: ${res.status} ${await res.clone().text()}`);
    return (await res.json()) as { job: { jobId: string } };
  };
  const deliveries = () => got.map((g) => JSON.parse(g.body) as WebhookDelivery);
  const waitFor = (n: number) => eventually(async () => (got.length >= n ? true : undefined), 30_000, `${n} deliveries`);

  it('posts each change of state, in order and signed; a 5xx is retried with the same delivery id; progress alone is not news', async () => {
    await registerDevice(ts, 'idle-1');
    await registerDevice(ts, 'idle-2');
    answers.push(503); // the receiver fails the first attempt
    const { job } = await api('POST', '/api/v1/jobs', { artifact: 'fw@2.0.0', targets: { devices: ['idle-1', 'idle-2'] }, description: 'night rollout' });
    await api('POST', `/api/v1/jobs/${job.jobId}/pause`);
    await api('POST', `/api/v1/jobs/${job.jobId}/resume`);
    await api('POST', `/api/v1/jobs/${job.jobId}/cancel`);
    await waitFor(5);
    const d = deliveries();
    assert.deepEqual(
      d.map((x) => [x.type, x.job.status, x.job.previousStatus ?? null]),
      [
        ['job.state', 'IN_PROGRESS', null], // refused with 503...
        ['job.state', 'IN_PROGRESS', null], // ...and sent again
        ['job.state', 'PAUSED', 'IN_PROGRESS'],
        ['job.state', 'IN_PROGRESS', 'PAUSED'],
        ['job.state', 'CANCELED', 'IN_PROGRESS'],
      ],
    );
    assert.equal(got[0]!.headers['x-updraft-delivery'], got[1]!.headers['x-updraft-delivery'], 'a retry is the same delivery');
    // counted once the receiver's answer is read, just after it arrived there
    const counted = () => fetch(`${ts.httpUrl}/api/v1/metrics`, { headers: { authorization: `Bearer ${ts.token}` } }).then(async (r) => ((await r.json()) as { webhook: { delivered: number; failed: number; dropped: number } }).webhook);
    assert.deepEqual(await eventually(async () => ((await counted()).delivered === 4 ? counted() : undefined), 10_000, 'four delivered'), { delivered: 4, failed: 0, dropped: 0, waiting: 0 });
    assert.equal(new Set(d.map((x) => x.id)).size, 4, 'one id per change');
    assert.deepEqual({ ...d[2]!.job }, { jobId: job.jobId, artifact: 'fw@2.0.0', status: 'PAUSED', previousStatus: 'IN_PROGRESS', wave: 1, waves: 1, reason: 'paused by an operator', description: 'night rollout' });
    for (const g of got) {
      assert.equal(g.headers['x-updraft-event'], 'job.state');
      assert.equal(g.headers['x-updraft-delivery'], (JSON.parse(g.body) as WebhookDelivery).id);
      const m = /^t=(\d+),sha256=([0-9a-f]{64})$/.exec(String(g.headers['x-updraft-signature']));
      assert.ok(m, String(g.headers['x-updraft-signature']));
      assert.equal(m[2], createHmac('sha256', SECRET).update(`${m[1]}.${g.body}`).digest('hex'), 'the signature holds');
      assert.notEqual(m[2], createHmac('sha256', 'another secret').update(`${m[1]}.${g.body}`).digest('hex'));
    }
  });

  it('posts a wave moving on, and a job completing', async () => {
    got.length = 0;
    const started = await startAgent(ts, root, 'w-1');
    agent = started.agent;
    const secret2 = await registerDevice(ts, 'w-2');
    const second = await startAgent(ts, root, 'w-2', { username: 'w-2', password: secret2 });
    try {
      const { job } = await api('POST', '/api/v1/jobs', { artifact: 'fw@2.0.0', targets: { devices: ['w-1', 'w-2'] }, plan: { waves: [{ count: 1 }, { percent: 100 }] } });
      assert.equal((await outcome(second.finished, job.jobId)).status, 'SUCCESS');
      await eventually(async () => (deliveries().some((x) => x.job.status === 'COMPLETED') ? true : undefined), 30_000, 'COMPLETED posted');
      assert.deepEqual(
        deliveries().map((x) => [x.type, x.job.status, x.job.wave, x.job.waves]),
        [
          ['job.state', 'IN_PROGRESS', 1, 2],
          ['job.wave', 'IN_PROGRESS', 2, 2],
          ['job.state', 'COMPLETED', 2, 2],
        ],
      );
    } finally {
      await second.agent.stop();
    }
  });
});

describe('webhook delivery rules', () => {
  /**
   * A receiver answering `status` to everything (or never, for `hang`), and a notifier
   * posting to it; `store` is shared with other notifiers (instances) when given.
   */
  async function setup(status: number | 'hang', leader: { is: boolean }, shared?: SqliteStore) {
    const received: string[] = [];
    const receiver = http.createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        received.push(req.headers['x-updraft-delivery'] as string);
        if (status !== 'hang') res.writeHead(status).end();
      });
    });
    await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
    const own = shared ? undefined : await startTempStore('hook-store');
    const store = shared ?? own!.store;
    const events = new EventBus();
    const url = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/`;
    const notifier = new WebhookNotifier({ events, store, url, secret: 's', isLeader: () => leader.is, logger: silentLogger, retryDelayMs: 1, scanMs: 50 });
    await notifier.start();
    const job: JobRecord = { jobId: 'j-1', artifactName: 'fw', artifactVersion: '2.0.0', status: 'IN_PROGRESS', createdAt: Date.now(), updatedAt: Date.now(), version: 1, progress: {} };
    const close = async () => {
      await notifier.stop();
      receiver.closeAllConnections();
      await new Promise((r) => receiver.close(r));
      await own?.close();
    };
    return { received, events, notifier, job, store, url, close };
  }

  it('a receiver refusing with a 4xx is not asked again; a 5xx is, five times in all', async () => {
    const refused = await setup(400, { is: true });
    try {
      refused.events.emit('job.changed', { job: refused.job });
      await eventually(async () => (refused.notifier.stats.failed === 1 ? true : undefined), 10_000, 'the refusal counted');
      assert.deepEqual(refused.received, ['j-1:1']);
    } finally {
      await refused.close();
    }
    const failing = await setup(502, { is: true });
    try {
      failing.events.emit('job.changed', { job: failing.job });
      await eventually(async () => (failing.notifier.stats.failed === 1 ? true : undefined), 10_000, 'every attempt failed');
      assert.deepEqual(failing.received, ['j-1:1', 'j-1:1', 'j-1:1', 'j-1:1', 'j-1:1']);
    } finally {
      await failing.close();
    }
  });

  it('an instance that does not drive rollouts records changes and sends nothing; the one that takes the lead sends them, in order, once', async () => {
    const leader = { is: false };
    const follower = await setup(204, leader);
    // another instance on the same store, which saw the same changes (the relayed events)
    const other = await setup(204, { is: false }, follower.store);
    try {
      const at = follower.job.updatedAt!;
      const changes: JobRecord[] = [follower.job, { ...follower.job, status: 'PAUSED', version: 2, updatedAt: at + 1 }, { ...follower.job, status: 'CANCELED', version: 3, updatedAt: at + 2 }];
      for (const job of changes) follower.events.emit('job.changed', { job });
      for (const job of changes) other.events.emit('job.changed', { job });
      await eventually(async () => ((await follower.store.listSettings('webhook:')).length === 3 ? true : undefined), 10_000, 'three recorded');
      await sleep(200);
      assert.deepEqual(follower.received, [], 'nothing sent without the lead');
      leader.is = true;
      await eventually(async () => (follower.notifier.stats.delivered === 3 ? true : undefined), 10_000, 'the three sent once it leads');
      assert.deepEqual(follower.received, ['j-1:1', 'j-1:2', 'j-1:3']);
      // a copy of a change sent already, recorded late by an instance that saw it late: not news
      const late = await setup(204, { is: false }, follower.store);
      try {
        late.events.emit('job.changed', { job: changes[2]! });
        await sleep(300);
      } finally {
        await late.close();
      }
      assert.deepEqual(follower.received, ['j-1:1', 'j-1:2', 'j-1:3'], 'each sent once');
      assert.deepEqual(other.received, []);
    } finally {
      await other.close();
      await follower.close();
    }
  });

  it("a job's changes go in the order of its versions, also when its time went back between them (two instances' clocks)", async () => {
    const leader = { is: false };
    const sender = await setup(204, leader);
    try {
      const t = sender.job.updatedAt!;
      // two jobs' writes as the engine emits them (with the record each replaced). j-1: paused
      // through the instance that took the operator's request, stamped t + 50 by its clock;
      // then aborted by the leader's tick, which began (and took its time) at t, before the
      // pause, and read the job after it: version 3 is stamped 50 ms before version 2
      const j1 = { ...sender.job, progress: { wave: 0 } };
      const paused: JobRecord = { ...j1, status: 'PAUSED', version: 2, updatedAt: t + 50, progress: { wave: 0, pause: { reason: 'operator', wave: 0, message: 'paused by an operator', at: t + 50 } } };
      const aborted: JobRecord = { ...paused, status: 'ABORTED', version: 3, updatedAt: t, progress: { ...paused.progress, abortReason: 'too many failures', finishedAt: t } };
      // j-2 paused in between, by the leader's clock
      const j2: JobRecord = { ...j1, jobId: 'j-2' };
      const j2Paused: JobRecord = { ...j2, status: 'PAUSED', version: 2, updatedAt: t + 20, progress: { wave: 0, pause: { reason: 'operator', wave: 0, message: 'paused by an operator', at: t + 20 } } };
      sender.events.emit('job.changed', { job: paused, previous: j1 });
      sender.events.emit('job.changed', { job: j2Paused, previous: j2 });
      sender.events.emit('job.changed', { job: aborted, previous: paused });
      // all three wait together (no sender yet; the same with a receiver slow to answer)
      await eventually(async () => ((await sender.store.listSettings('webhook:')).length === 3 ? true : undefined), 10_000, 'three recorded');
      leader.is = true;
      await eventually(async () => (sender.notifier.stats.delivered === 3 ? true : undefined), 10_000, 'the three sent');
      assert.deepEqual(sender.received, ['j-1:2', 'j-2:2', 'j-1:3'], "j-1's pause before its abort, in the places of their times");
    } finally {
      await sender.close();
    }
  });

  it('a delivery under way when its sender stops is sent by the next one (a restart, or an instance taking over)', async () => {
    const first = await setup('hang', { is: true });
    const next = await setup(204, { is: false }, first.store);
    try {
      first.events.emit('job.changed', { job: first.job });
      await eventually(async () => (first.received.length === 1 ? true : undefined), 10_000, 'the first attempt in flight');
      assert.equal(first.notifier.stats.waiting, 1, 'counted as waiting while it is sent');
      await first.notifier.stop(); // the sender stops (or dies) before the receiver answers
      assert.equal(first.notifier.stats.delivered, 0);
      await next.notifier.stop();
      const taking = new WebhookNotifier({ events: new EventBus(), store: first.store, url: next.url, secret: 's', isLeader: () => true, logger: silentLogger, retryDelayMs: 1, scanMs: 50 });
      await taking.start();
      try {
        await eventually(async () => (taking.stats.delivered === 1 ? true : undefined), 10_000, 'sent by the next sender');
        assert.deepEqual(next.received, ['j-1:1'], 'the same delivery id');
      } finally {
        await taking.stop();
      }
    } finally {
      await next.close();
      await first.close();
    }
  });
});

describe('webhook news after a restart', () => {
  it("a paused or finished job's later writes, or its change seen again past the hour its record is kept, are not announced again", async () => {
    const received: string[] = [];
    const receiver = http.createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        received.push(req.headers['x-updraft-delivery'] as string);
        res.writeHead(204).end();
      });
    });
    await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/`;
    const { store, close } = await startTempStore('hook-store');
    const t0 = Date.now();
    let clock = t0;
    const notifier = () => new WebhookNotifier({ events: new EventBus(), store, url, secret: 's', isLeader: () => true, logger: silentLogger, retryDelayMs: 1, scanMs: 50, now: () => clock });
    const base: JobRecord = { jobId: 'j-1', artifactName: 'fw', artifactVersion: '2.0.0', status: 'IN_PROGRESS', createdAt: t0 - 600_000, updatedAt: t0 - 600_000, version: 1, progress: { wave: 0 } };
    const pause = { reason: 'approval', wave: 0, message: 'wave 1 finished and needs approval', at: t0 };
    const paused: JobRecord = { ...base, status: 'PAUSED', updatedAt: t0, version: 2, progress: { wave: 0, pause } };
    // a later write to the paused job (its counts, a settled total): the same status
    const rewritten: JobRecord = { ...paused, updatedAt: t0 + 1000, version: 3, progress: { wave: 0, total: 7, pause } };
    const other: JobRecord = { ...paused, jobId: 'j-2' };
    const first = notifier();
    await first.start();
    try {
      first['deps'].events.emit('job.changed', { job: paused });
      first['deps'].events.emit('job.changed', { job: other });
      await eventually(async () => (first.stats.delivered === 2 ? true : undefined), 10_000, 'the pauses sent');
    } finally {
      await first.stop();
    }
    // restarted two hours later: the sent record is past its hour and removed at the first pass
    clock = t0 + 2 * 3_600_000;
    const again = notifier();
    await again.start();
    try {
      await eventually(async () => ((await store.listSettings('webhook:')).length === 0 ? true : undefined), 10_000, 'the sent record removed');
      again['deps'].events.emit('job.changed', { job: rewritten });
      again['deps'].events.emit('job.changed', { job: other }); // the pause itself, seen again (a replay)
      // a change that is news: the job canceled now, after those
      const canceled: JobRecord = { ...rewritten, status: 'CANCELED', updatedAt: clock, version: 4, progress: { wave: 0, total: 7, finishedAt: clock } };
      again['deps'].events.emit('job.changed', { job: canceled });
      // sent after anything recorded before it (deliveries go in the order of the changes' times)
      await eventually(async () => (received.includes('j-1:4') ? true : undefined), 10_000, 'the cancel sent');
      assert.deepEqual(received, ['j-1:2', 'j-2:2', 'j-1:4'], 'each pause once, then the cancel');
    } finally {
      await again.stop();
      receiver.closeAllConnections();
      await new Promise((r) => receiver.close(r));
      await close();
    }
  });
});

describe('webhook queue', () => {
  it('holds at most 1,000 waiting deliveries: past that the oldest waiting one is dropped, never the one being sent', async () => {
    const received: string[] = [];
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    const receiver = http.createServer((req, res) => {
      let body = '';
      req.on('data', (c) => (body += c));
      req.on('end', () => {
        received.push((JSON.parse(body) as WebhookDelivery).job.jobId);
        // the first delivery hangs until the queue has overflowed
        void (received.length === 1 ? held : Promise.resolve()).then(() => res.writeHead(204).end());
      });
    });
    await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
    const events = new EventBus();
    const { store, close } = await startTempStore('hook-store');
    const notifier = new WebhookNotifier({ events, store, url: `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/`, secret: 's', isLeader: () => true, logger: silentLogger });
    await notifier.start();
    try {
      const at = Date.now();
      const job = (i: number): JobRecord => ({ jobId: `job-${i}`, artifactName: 'fw', artifactVersion: '2.0.0', status: 'IN_PROGRESS', createdAt: at, updatedAt: at + i, version: 1, progress: {} });
      events.emit('job.changed', { job: job(0) });
      await eventually(async () => (received.length === 1 ? true : undefined), 10_000, 'the first delivery in flight');
      for (let i = 1; i <= 1001; i++) events.emit('job.changed', { job: job(i) });
      await eventually(async () => ((await store.listSettings('webhook:')).length === 1002 ? true : undefined), 10_000, 'all recorded');
      release();
      await eventually(async () => (notifier.stats.delivered === 1001 ? true : undefined), 30_000, 'the rest delivered');
      assert.equal(notifier.stats.dropped, 1);
      assert.equal(received[0], 'job-0', 'the one being sent was sent');
      assert.ok(!received.includes('job-1'), 'the oldest waiting was dropped');
      assert.deepEqual(received.slice(1, 3), ['job-2', 'job-3'], 'the rest in order');
      assert.equal(received.length, 1001);
    } finally {
      await notifier.stop();
      await new Promise((r) => receiver.close(r));
      await close();
    }
  });
});
