/**
 * Webhooks across a real server restart: a real server with `--webhook-url`, a real HTTP
 * receiver, real agents, the real SQLite store. Each change of a job made after the restart
 * is posted once, and nothing posted before it is posted again.
 *
 * The restart comes two hours later: while the server is stopped, the job times in its
 * database (and the sent records' times) are moved two hours back, which is what two hours
 * of wall clock would have done (the test does not wait them).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import type { UpdateAgent } from '../../src/agent/agent.ts';
import type { WebhookDelivery } from '../../src/events/webhook-notifier.ts';
import { eventually } from '../helpers/cli.ts';
import { startWebhookReceiver, type WebhookReceiver } from '../helpers/webhook-receiver.ts';
import { registerDevice, startTestServer, type TestServer } from '../helpers/server.ts';
import { addArtifact, startAgent } from '../security/support.ts';

const HOURS_2 = 2 * 3_600_000;

/** Moves every job time and every sent webhook record `ms` into the past (the server stopped). */
function agePast(dataDir: string, ms: number): void {
  const db = new Database(path.join(dataDir, 'updraft.db'));
  try {
    const jobs = db.prepare('SELECT job_id, progress FROM jobs').all() as { job_id: string; progress: string | null }[];
    for (const { job_id, progress } of jobs) {
      const p = progress ? (JSON.parse(progress) as Record<string, unknown> & { pause?: { at: number } }) : undefined;
      if (p) {
        for (const k of ['startedAt', 'waveStartedAt', 'rateEpoch', 'finishedAt'] as const) if (typeof p[k] === 'number') p[k] = (p[k] as number) - ms;
        if (p.pause) p.pause.at -= ms;
      }
      db.prepare('UPDATE jobs SET created_at = created_at - ?, updated_at = updated_at - ?, progress = ? WHERE job_id = ?').run(ms, ms, p ? JSON.stringify(p) : null, job_id);
    }
    for (const { key, value } of db.prepare("SELECT key, value FROM settings WHERE key LIKE 'webhook:%'").all() as { key: string; value: string }[]) {
      const stored = JSON.parse(value) as { sentAt?: number };
      if (stored.sentAt !== undefined) db.prepare('UPDATE settings SET value = ? WHERE key = ?').run(JSON.stringify({ ...stored, sentAt: stored.sentAt - ms }), key);
    }
  } finally {
    db.close();
  }
}

describe('webhooks across a server restart', () => {
  let receiver: WebhookReceiver;
  let url: string;
  let ts: TestServer | undefined;
  let root: string;
  const agents: UpdateAgent[] = [];
  const got: WebhookDelivery[] = [];

  before(async () => {
    receiver = await startWebhookReceiver(got);
    url = receiver.url;
    root = await mkdtemp(path.join(os.tmpdir(), 'updraft-hook-restart-'));
  });
  after(async () => {
    for (const a of agents) await a.stop();
    await ts?.close();
    await receiver.close();
    await rm(root, { recursive: true, force: true });
  });

  const api = async (method: string, route: string, body?: unknown) => {
    const res = await fetch(ts!.httpUrl + route, { method, headers: { authorization: `Bearer ${ts!.token}`, 'content-type': 'application/json' }, ...(body ? { body: JSON.stringify(body) } : {}) });
    assert.ok(res.ok, `${method} ${route}: ${res.status} ${await res.clone().text()}`);
    return (await res.json()) as { job: { jobId: string; status: string } };
  };
  const statusOf = async (jobId: string) => (await api('GET', `/api/v1/jobs/${jobId}`)).job.status;
  const startAgents = async (ids: string[], secrets: Map<string, string>) => {
    for (const id of ids) agents.push((await startAgent(ts!, root, id, { username: id, password: secrets.get(id)! })).agent);
  };
  const stopAgents = async () => {
    for (const a of agents.splice(0)) await a.stop();
  };
  const summary = (jobId: string, list: WebhookDelivery[]) => list.filter((d) => d.job.jobId === jobId).map((d) => [d.type, d.job.status, d.job.previousStatus ?? null, d.job.wave]);

  it("a job resumed, or moving to its next wave, after a restart is posted once; what was posted before is not posted again", async () => {
    const flags = { 'webhook-url': url };
    ts = await startTestServer({ flags });
    const dataDir = ts.dataDir;
    await addArtifact(ts, '2.0.0', randomBytes(5000));
    const secrets = new Map<string, string>();
    for (const id of ['a-1', 'a-2', 'b-1', 'b-2']) secrets.set(id, await registerDevice(ts, id));
    // A: its first wave needs approval; paused for it before the restart
    await startAgents(['a-1', 'a-2'], secrets);
    const a = (await api('POST', '/api/v1/jobs', { artifact: 'fw@2.0.0', targets: { devices: ['a-1', 'a-2'] }, plan: { waves: [{ count: 1, requireApproval: true }, { percent: 100 }] } })).job.jobId;
    // B: its first wave sent to a device that is offline until after the restart
    const b = (await api('POST', '/api/v1/jobs', { artifact: 'fw@2.0.0', targets: { devices: ['b-1', 'b-2'] }, plan: { waves: [{ count: 1 }, { percent: 100 }] } })).job.jobId;
    await eventually(async () => (got.some((d) => d.job.jobId === a && d.job.status === 'PAUSED') ? true : undefined), 30_000, 'A paused for approval, posted');
    await eventually(async () => (got.some((d) => d.job.jobId === b) ? true : undefined), 30_000, 'B posted');
    assert.deepEqual(summary(a, got), [['job.state', 'IN_PROGRESS', null, 1], ['job.state', 'PAUSED', 'IN_PROGRESS', 1]]);
    assert.deepEqual(summary(b, got), [['job.state', 'IN_PROGRESS', null, 1]]);
    const before = got.length;

    await stopAgents();
    await ts.stop();
    ts = undefined;
    agePast(dataDir, HOURS_2);
    ts = await startTestServer({ dataDir, flags });

    await api('POST', `/api/v1/jobs/${a}/resume`);
    await startAgents(['a-1', 'a-2', 'b-1', 'b-2'], secrets);
    await eventually(async () => ((await statusOf(a)) === 'COMPLETED' && (await statusOf(b)) === 'COMPLETED' ? true : undefined), 60_000, 'both jobs completed');
    await eventually(async () => (got.filter((d) => d.job.status === 'COMPLETED').length === 2 ? true : undefined), 30_000, 'both completions posted');
    const since = got.slice(before);
    assert.deepEqual(summary(a, since), [['job.state', 'IN_PROGRESS', 'PAUSED', 2], ['job.state', 'COMPLETED', 'IN_PROGRESS', 2]], 'A: its resume, then its end');
    assert.deepEqual(summary(b, since), [['job.wave', 'IN_PROGRESS', null, 2], ['job.state', 'COMPLETED', 'IN_PROGRESS', 2]], 'B: its next wave, then its end');
    const ids = got.map((d) => d.id);
    assert.equal(new Set(ids).size, ids.length, `each change posted once: ${ids.join(' ')}`);
  });
});
