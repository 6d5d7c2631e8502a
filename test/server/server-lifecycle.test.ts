/**
 * `updraft server`'s lifecycle as a real process: a stop that hangs (PostgreSQL
 * stopped with SIGSTOP) ends at a second signal, or by itself after its bound, saying so; a
 * closed stdout does not kill it; with `--log-format json` the line saying why it exited is
 * JSON too; a second server on a data directory in use is refused before it writes anything
 * there; a SIGHUP while it starts does not end it.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, describe, it, type TestContext } from 'node:test';
import { eventually, runCli, startCli, type CliProcess } from '../helpers/cli.ts';
import { freePort } from '../helpers/free-port.ts';
import { startTestPostgres, unavailable } from '../helpers/postgres.ts';
import pgDriver from 'pg';
import { MIGRATION_LOCK } from '../../src/store/postgres-migrations.ts';

const BIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../bin/updraft.js');
const LOCAL = ['--mqtt-host', '127.0.0.1', '--http-host', '127.0.0.1', '--mqtt-port', '0', '--http-port', '0'];

/** The exit code of a started process, once it exits. */
function exitOf(proc: CliProcess): Promise<number | null> {
  const { child } = proc;
  if (child.exitCode !== null) return Promise.resolve(child.exitCode);
  return new Promise((resolve) => child.once('exit', (code) => resolve(code)));
}

/** `pid` and its children (PostgreSQL's postmaster and its backends), from /proc. */
function withChildren(pid: number): number[] {
  const children: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      // the fields after the command's parenthesis: state, then the parent's pid
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === pid) children.push(Number(entry));
    } catch {
      /* gone meanwhile */
    }
  }
  return [pid, ...children];
}

const pgResult = await startTestPostgres();
// the file's last hook: both describes below use the server
after(() => (pgResult.ok ? pgResult.server.stop() : undefined));

describe('a stop that hangs (PostgreSQL silent)', () => {
  if (!pgResult.ok) {
    const message = unavailable(pgResult, 'server stop tests');
    it('a second signal or the bound ends it', (t) => t.skip(message));
    return;
  }
  const pg = pgResult.server;

  /**
   * A server on PostgreSQL, started, then PostgreSQL stopped with SIGSTOP (the postmaster and
   * its backends: a stuck server, as QA saw it): its connections stay open and nothing answers,
   * nor closes them, so the server's stop cannot finish.
   */
  async function hungServer(t: TestContext): Promise<{ proc: CliProcess; done: () => Promise<void> } | undefined> {
    if (pg.pid === undefined) return void t.skip('needs the private PostgreSQL (its pid), not UPDRAFT_TEST_POSTGRES_URL');
    const dataDir = await mkdtemp(path.join(os.tmpdir(), 'updraft-stop-hang-'));
    const proc = startCli(['server', '--data-dir', dataDir, '--db', await pg.createDatabase(), '--mqtt-tls-port', '-1', ...LOCAL]);
    const url = (await proc.waitFor(/HTTP API and downloads on (http:\/\/\S+)/, 60_000))[1]!;
    await proc.waitFor(/updraft: data in/);
    assert.equal((await fetch(`${url}/healthz`)).status, 200);
    const frozen = withChildren(pg.pid);
    for (const pid of frozen) process.kill(pid, 'SIGSTOP');
    // device registrations in flight: their writes hold the store's stop (the group commit
    // drains, each query up to the store's query timeout), a minute or more here
    const token = (await readFile(path.join(dataDir, 'operator-token'), 'utf8')).trim();
    const requests: http.ClientRequest[] = [];
    await Promise.all(
      Array.from({ length: 20 }, (_, i) => {
        const body = JSON.stringify({ deviceId: `d-${i}` });
        const req = http.request(`${url}/api/v1/devices`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } });
        req.on('error', () => undefined);
        requests.push(req);
        // sent: the server, which serves until its HTTP part stops (after the rollouts' lease
        // has given up its query, 10 s), takes them into the store before the store stops
        return new Promise<void>((resolve) => req.end(body, () => resolve()));
      }),
    );
    return {
      proc,
      done: async () => {
        for (const req of requests) req.destroy();
        await proc.kill('SIGKILL');
        for (const pid of frozen) process.kill(pid, 'SIGCONT');
        await rm(dataDir, { recursive: true, force: true });
      },
    };
  }

  it('a second SIGTERM while the stop waits ends the process at once: exit 143, one line saying so', { timeout: 120_000 }, async (t) => {
    const hung = await hungServer(t);
    if (!hung) return;
    const { proc, done } = hung;
    try {
      proc.child.kill('SIGTERM');
      await proc.waitFor(/SIGTERM: stopping/);
      const exited = exitOf(proc);
      proc.child.kill('SIGTERM');
      // without the fix the second signal did nothing: the process exited 0 once its stop ended, a minute later
      assert.equal(await exited, 143);
      const line = proc.output().match(/ERROR +SIGTERM again while stopping: exiting now without waiting for the stop to finish waitingFor=\w+/);
      assert.ok(line, proc.output());
      t.diagnostic(line[0]);
    } finally {
      await done();
    }
  });

  it('a stop that has not finished within its bound ends by itself, naming what it waited for: exit 1', { timeout: 150_000 }, async (t) => {
    const hung = await hungServer(t);
    if (!hung) return;
    const { proc, done } = hung;
    try {
      const exited = exitOf(proc);
      proc.child.kill('SIGTERM');
      await proc.waitFor(/SIGTERM: stopping/);
      assert.equal(await exited, 1);
      const line = proc.output().match(/ERROR +the stop did not finish within 30 s: exiting without it waitingFor=\w+/);
      assert.ok(line, proc.output());
      t.diagnostic(line[0]);
    } finally {
      await done();
    }
  });
});

describe('the server and its output', () => {
  it('goes on serving when stdout is closed before its startup lines: no crash, one warning', { timeout: 120_000 }, async () => {
    const dataDir = await mkdtemp(path.join(os.tmpdir(), 'updraft-epipe-'));
    const port = await freePort();
    const child = spawn(process.execPath, [BIN, 'server', '--data-dir', dataDir, '--mqtt-tls-port', '-1', '--mqtt-host', '127.0.0.1', '--http-host', '127.0.0.1', '--mqtt-port', '0', '--http-port', String(port)], { stdio: ['ignore', 'pipe', 'pipe'] });
    // as `updraft server | head -1` once head has gone: the pipe's reading end is closed
    child.stdout.destroy();
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    try {
      await eventually(async () => ((await fetch(`http://127.0.0.1:${port}/healthz`).catch(() => undefined))?.status === 200 ? true : undefined), 60_000, '/healthz answering');
      await eventually(async () => (/stdout is closed/.test(stderr) ? true : undefined), 30_000, 'the warning');
      // still serving after the banner was tried
      assert.equal((await fetch(`http://127.0.0.1:${port}/healthz`)).status, 200);
      assert.equal(child.exitCode, null, `still running: ${stderr}`);
      assert.doesNotMatch(stderr, /Unhandled|EPIPE.*\n\s+at /);
      assert.match(stderr, /WARN +stdout is closed \(EPIPE\): the startup lines are not shown; the server goes on/);
      child.kill('SIGTERM');
      assert.equal(await exited, 0);
    } finally {
      child.kill('SIGKILL');
      await rm(dataDir, { recursive: true, force: true });
    }
  });

  it('goes on serving with stdout and stderr both closed (a log pipe gone)', { timeout: 120_000 }, async () => {
    const dataDir = await mkdtemp(path.join(os.tmpdir(), 'updraft-epipe-'));
    const port = await freePort();
    // --log-level debug: lines to write from the start
    const child = spawn(process.execPath, [BIN, 'server', '--data-dir', dataDir, '--log-level', 'debug', '--mqtt-tls-port', '-1', '--mqtt-host', '127.0.0.1', '--http-host', '127.0.0.1', '--mqtt-port', '0', '--http-port', String(port)], { stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout.destroy();
    child.stderr.destroy();
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    try {
      await eventually(async () => ((await fetch(`http://127.0.0.1:${port}/healthz`).catch(() => undefined))?.status === 200 ? true : undefined), 60_000, '/healthz answering');
      // requests, which are logged (operator requests at INFO), and the server still answers
      for (let i = 0; i < 3; i++) assert.equal((await fetch(`http://127.0.0.1:${port}/api/v1/devices`, { method: 'POST', body: '{}' })).status, 401);
      assert.equal((await fetch(`http://127.0.0.1:${port}/healthz`)).status, 200);
      assert.equal(child.exitCode, null, 'still running');
      child.kill('SIGTERM');
      assert.equal(await exited, 0);
    } finally {
      child.kill('SIGKILL');
      await rm(dataDir, { recursive: true, force: true });
    }
  });

  it('with --log-format json, every stderr line is JSON, the last the error saying why it exited (a port in use)', { timeout: 60_000 }, async () => {
    const dataDir = await mkdtemp(path.join(os.tmpdir(), 'updraft-json-exit-'));
    const taken = net.createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', () => resolve()));
    const port = (taken.address() as net.AddressInfo).port;
    try {
      const r = await runCli(['server', '--data-dir', dataDir, '--log-format', 'json', '--mqtt-tls-port', '-1', '--mqtt-host', '127.0.0.1', '--http-host', '127.0.0.1', '--mqtt-port', '0', '--http-port', String(port)]);
      assert.equal(r.code, 1, r.stderr);
      const lines = r.stderr.trimEnd().split('\n');
      const parsed = lines.map((l) => {
        try {
          return JSON.parse(l) as Record<string, unknown>;
        } catch {
          assert.fail(`not a JSON line: ${l}`);
        }
      });
      const last = parsed.at(-1)!;
      assert.equal(last.level, 'error');
      assert.equal(last.code, 'PORT_IN_USE');
      assert.match(String(last.msg), new RegExp(`HTTP port ${port} on 127.0.0.1 is already in use`));
      assert.ok(!Number.isNaN(Date.parse(String(last.time))), 'a time');
      // the readable line stays for the text format
      const text = await runCli(['server', '--data-dir', dataDir, '--mqtt-tls-port', '-1', '--mqtt-host', '127.0.0.1', '--http-host', '127.0.0.1', '--mqtt-port', '0', '--http-port', String(port)]);
      assert.equal(text.code, 1);
      assert.match(text.stderr, new RegExp(`^updraft: error: HTTP port ${port} on 127.0.0.1 is already in use.*\\n$`, 'm'));
    } finally {
      taken.close();
      await rm(dataDir, { recursive: true, force: true });
    }
  });

  it('a second server on a data directory in use is refused before it rewrites anything there (its TLS material)', { timeout: 120_000 }, async () => {
    const dataDir = await mkdtemp(path.join(os.tmpdir(), 'updraft-in-use-'));
    const first = startCli(['server', '--data-dir', dataDir, '--mqtt-tls-port', '0', ...LOCAL]);
    try {
      await first.waitFor(/updraft: data in/, 60_000);
      const pki = ['server.crt', 'server.key', 'server-hosts.json'].map((f) => path.join(dataDir, 'pki', f));
      const before = await Promise.all(pki.map((f) => readFile(f)));
      const second = await runCli(['server', '--data-dir', dataDir, '--mqtt-tls-port', '0', '--tls-hosts', 'evil.example', ...LOCAL]);
      assert.equal(second.code, 1, second.stderr);
      assert.match(second.stderr, /^updraft: error: State database .*updraft\.db is open in another process/);
      assert.equal(second.stderr.trimEnd().split('\n').length, 1, second.stderr);
      const afterwards = await Promise.all(pki.map((f) => readFile(f)));
      for (let i = 0; i < pki.length; i++) assert.ok(afterwards[i]!.equals(before[i]!), `${pki[i]} unchanged`);
      assert.equal((await first.kill('SIGTERM')), 0);
    } finally {
      await first.kill('SIGKILL');
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});

describe('a SIGHUP while the server starts', () => {
  if (!pgResult.ok) {
    const message = unavailable(pgResult, 'SIGHUP while starting');
    it('does not end it', (t) => t.skip(message));
    return;
  }
  const pg = pgResult.server;

  it('does not end it (its default action would); the TLS files are read again once it serves', async () => {
    const url = await pg.createDatabase();
    // the start held in its migrations, as behind another instance migrating: the lock taken here
    const holder = new pgDriver.Client({ connectionString: url });
    await holder.connect();
    await holder.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK.toString()]);
    const dataDir = await mkdtemp(path.join(os.tmpdir(), 'updraft-hup-start-'));
    const proc = startCli(['server', '--data-dir', dataDir, '--db', url, '--mqtt-tls-port', '-1', ...LOCAL]);
    try {
      // the server's session asks for the lock, in a loop: it is inside start()
      await eventually(async () => {
        const { rows } = await holder.query<{ n: string }>("SELECT count(*) AS n FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND query LIKE '%pg_try_advisory_lock%'");
        return Number(rows[0]!.n) > 0 ? true : undefined;
      }, 60_000, "the server's start waiting for the migration lock");
      proc.child.kill('SIGHUP');
      await proc.waitFor(/SIGHUP while starting: the TLS certificate files are read again once the server serves/);
      assert.equal(proc.child.exitCode, null, 'still running');
      await holder.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK.toString()]);
      const http = (await proc.waitFor(/HTTP API and downloads on (http:\/\/\S+)/, 60_000))[1]!;
      // the signal's read, once serving (no TLS files of the operator's here)
      await proc.waitFor(/no TLS files of the operator's to read again .*nothing reloaded/);
      assert.equal((await fetch(`${http}/healthz`)).status, 200);
      assert.equal(await proc.kill('SIGTERM'), 0);
    } finally {
      await proc.kill('SIGKILL');
      await holder.end();
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});
