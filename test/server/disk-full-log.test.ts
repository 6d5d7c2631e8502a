/**
 * A full disk does not flood the log. Every write refused with "database or disk is full"
 * wrote two ERROR lines (the store's `group commit failed`, then the API's or the replica's
 * `request failed`), one pair per request: 5 device updates, 10 lines. Now each such line is
 * written once in full, the same line again within 30 s is counted and said when the 30 s
 * end (`suppressed=N`), and another error still has its line at once.
 *
 * The real `updraft server` runs with its data directory on a small tmpfs (root mounts it;
 * elsewhere the test skips, saying why, except under CI=true), which is filled until the
 * kernel says ENOSPC; requests go through the REST API and over MQTT, and the log is read.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, statfs, unlink } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createLogger } from '../../src/util/logger.ts';
import { eventually, startCli, type CliProcess } from '../helpers/cli.ts';
import { TestClient } from '../helpers/mqtt-client.ts';
import { fill, tmpfsOrSkip, unmount } from '../helpers/tmpfs.ts';

/** ERROR lines of the log with `text` in them. */
function errorLines(log: string, text: string): string[] {
  return log.split('\n').filter((l) => / ERROR /.test(l) && l.includes(text));
}

describe('a full disk in the log', () => {
  let mountPoint: string;
  let mounted = false;
  let skip: string | undefined;
  let proc: CliProcess | undefined;

  before(async () => {
    mountPoint = await mkdtemp(path.join(os.tmpdir(), 'updraft-disk-log-'));
    skip = tmpfsOrSkip(mountPoint, '16m');
    mounted = skip === undefined;
  });

  after(async () => {
    await proc?.kill();
    if (mounted) unmount(mountPoint);
    await rm(mountPoint, { recursive: true, force: true });
  });

  it('writes each refusal once, counts the repeats every 30 s, and writes another error at once', async (t) => {
    if (skip) return t.skip(skip);
    const dataDir = path.join(mountPoint, 'data');
    proc = startCli(['server', '--data-dir', dataDir, '--mqtt-host', '127.0.0.1', '--http-host', '127.0.0.1', '--mqtt-port', '0', '--http-port', '0', '--mqtt-tls-port', '-1']);
    const httpUrl = (await proc.waitFor(/HTTP API and downloads on (http:\/\/\S+)/, 60_000))[1]!;
    const mqttUrl = (await proc.waitFor(/MQTT broker on (mqtt:\/\/\S+)/))[1]!;
    await proc.waitFor(/updraft: data in/);
    const token = readFileSync(path.join(dataDir, 'operator-token'), 'utf8').trim();
    const api = (method: string, route: string, body: string | Uint8Array<ArrayBuffer>, type = 'application/json') =>
      fetch(httpUrl + route, { method, headers: { authorization: `Bearer ${token}`, 'content-type': type }, body });
    const reg = await api('POST', '/api/v1/devices', JSON.stringify({ deviceId: 'dev-1' }));
    assert.equal(reg.status, 201);
    const { secret } = (await reg.json()) as { secret: string };
    const device = await TestClient.connect(mqttUrl, 'dev-1', { username: 'dev-1', password: secret });
    t.after(() => device.end());
    await device.subscribe('state/dev-1/update/#');

    const filler = path.join(mountPoint, 'filler');
    await fill(filler);
    assert.equal((await statfs(mountPoint)).bavail, 0, 'the tmpfs is full');

    const N = 40;
    for (let i = 0; i < N; i++) {
      const res = await api('POST', '/api/v1/devices', JSON.stringify({ deviceId: `new-${i}` }));
      assert.equal(res.status, 500, await res.text());
      const answer = await device.request('state/dev-1/update', { state: { reported: { n: i } } });
      assert.equal(answer.topic, 'state/dev-1/update/rejected');
      assert.equal(answer.body.code, 500);
    }
    // another error while those go on: an upload refused by the full artifact directory
    const upload = await api('POST', '/api/v1/artifacts?name=fw&version=1.0.0', new Uint8Array(200_000).fill(7), 'application/octet-stream');
    assert.equal(upload.status, 500);

    let log = proc.output();
    const store = errorLines(log, '[store] group commit failed');
    const apiLines = errorLines(log, '[http] request failed method=POST path=/api/v1/devices ');
    const replica = errorLines(log, '[replica] request failed');
    // the first of each in full, the others not yet
    assert.equal(store.length, 1, log);
    assert.equal(apiLines.length, 1, log);
    assert.equal(replica.length, 1, log);
    assert.match(apiLines[0]!, /error="Commit of \d+ writes to .*updraft\.db failed: database or disk is full"$/);
    assert.match(replica[0]!, /deviceId=dev-1 op=update error=.*database or disk is full"$/);
    // a different error is not hidden by them
    assert.equal(errorLines(log, '[http] request failed method=POST path=/api/v1/artifacts ').length, 1, log);

    // when the 30 s end: how many were left out, with the last one's fields
    log = await eventually(async () => {
      const l = proc!.output();
      return errorLines(l, '[replica] request failed').length === 2 && errorLines(l, '[http] request failed method=POST path=/api/v1/devices ').length === 2 && errorLines(l, '[store] group commit failed').length === 2 ? l : undefined;
    }, 60_000, 'the count lines');
    assert.match(errorLines(log, '[http] request failed method=POST path=/api/v1/devices ')[1]!, new RegExp(`suppressed=${N - 1}$`));
    assert.match(errorLines(log, '[replica] request failed')[1]!, new RegExp(`suppressed=${N - 1}$`));
    assert.match(errorLines(log, '[store] group commit failed')[1]!, /error="database or disk is full" suppressed=\d+$/);

    // space again: served, and nothing more said
    await unlink(filler);
    const ok = await api('POST', '/api/v1/devices', JSON.stringify({ deviceId: 'after' }));
    assert.equal(ok.status, 201);
  });

  it('writes the counts still held when the server stops before their 30 s end', async (t) => {
    if (skip) return t.skip(skip);
    const dataDir = path.join(mountPoint, 'data-stop');
    const server = startCli(['server', '--data-dir', dataDir, '--mqtt-host', '127.0.0.1', '--http-host', '127.0.0.1', '--mqtt-port', '0', '--http-port', '0', '--mqtt-tls-port', '-1', '--drain-seconds', '0']);
    t.after(() => server.kill('SIGKILL'));
    const httpUrl = (await server.waitFor(/HTTP API and downloads on (http:\/\/\S+)/, 60_000))[1]!;
    await server.waitFor(/updraft: data in/);
    const token = readFileSync(path.join(dataDir, 'operator-token'), 'utf8').trim();
    const filler = path.join(mountPoint, 'filler-stop');
    await fill(filler);
    t.after(() => unlink(filler).catch(() => undefined));
    const N = 10;
    for (let i = 0; i < N; i++) {
      const res = await fetch(`${httpUrl}/api/v1/devices`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify({ deviceId: `stop-${i}` }) });
      assert.equal(res.status, 500);
    }
    const apiLine = '[http] request failed method=POST path=/api/v1/devices ';
    assert.equal(errorLines(server.output(), apiLine).length, 1, 'the first in full, the others held');
    // stopped a moment later: the count is written before the exit (it was lost: the timer is unref'd)
    await server.kill('SIGTERM');
    const lines = errorLines(server.output(), apiLine);
    assert.equal(lines.length, 2, server.output());
    assert.match(lines[1]!, new RegExp(`suppressed=${N - 1}$`));
  });

  it('the logger: a run ends after an interval with none (the next in full again); numbers do not make another line; JSON lines too', async () => {
    const lines: string[] = [];
    const log = createLogger({ format: 'json', write: (l) => lines.push(l), diskErrorIntervalMs: 300 }).child('store');
    const full = (n: number) => ({ writes: n, error: `Commit of ${n} writes failed: database or disk is full` });
    log.error('group commit failed', full(1));
    log.error('group commit failed', full(3));
    log.error('group commit failed', full(2));
    log.error('group commit failed', { error: 'disk I/O error' }); // another error: at once
    log.warn('group commit failed', { error: 'ENOSPC: no space left on device, write' }); // another text: at once
    log.info('group commit failed', full(9)); // INFO lines are not followed
    const parsed = () => lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    assert.deepEqual(parsed().map((l) => [l.level, l.writes ?? null, l.error]), [
      ['error', 1, 'Commit of 1 writes failed: database or disk is full'],
      ['error', null, 'disk I/O error'],
      ['warn', null, 'ENOSPC: no space left on device, write'],
      ['info', 9, 'Commit of 9 writes failed: database or disk is full'],
    ]);
    // the interval ends: the count, with the last one's fields
    await eventually(async () => (lines.length === 5 ? true : undefined), 10_000, 'the count line');
    assert.deepEqual(parsed()[4], { ...parsed()[4], level: 'error', component: 'store', msg: 'group commit failed', writes: 2, suppressed: 2 });
    // an interval with none ends the run: the next is written in full, at once
    await new Promise((r) => setTimeout(r, 1000));
    assert.equal(lines.length, 5);
    log.error('group commit failed', full(4));
    assert.equal(lines.length, 6);
    assert.equal(parsed()[5]!.suppressed, undefined);
  });
});
