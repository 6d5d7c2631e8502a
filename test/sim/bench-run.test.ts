/**
 * `npm run bench` (bench/run.ts) when a part fails under it: it fails at once, says why on one
 * line, and leaves no process or temporary directory behind. A tiny fleet, and the bench
 * stopped as soon as its simulator starts: seconds, not a benchmark.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { eventually, runNode } from '../helpers/cli.ts';
import { freePort } from '../helpers/free-port.ts';
import { findMosquitto, mosquittoUnavailable } from '../helpers/mosquitto.ts';
import { startTestPostgres, unavailable, type TestPostgres } from '../helpers/postgres.ts';

const RUN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../bench/run.ts');

/** A process's parent and command line, from /proc (Linux); undefined once it has ended. */
function procInfo(pid: number): { ppid: number; args: string[] } | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    return { ppid, args: readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0') };
  } catch {
    return undefined;
  }
}

/** The live children of `pid` running `updraft <command>`. */
function updraftChildren(pid: number, command: 'server' | 'sim'): { pid: number; args: string[] }[] {
  const out: { pid: number; args: string[] }[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const info = procInfo(Number(entry));
    if (info?.ppid !== pid) continue;
    const bin = info.args.findIndex((a) => a.endsWith('updraft.js'));
    if (bin >= 0 && info.args[bin + 1] === command) out.push({ pid: Number(entry), args: info.args });
  }
  return out;
}

/** Whether `pid` runs (a zombie, exited but not yet reaped by its parent, does not). */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

/** The live children of `pid` and their command lines. */
function childPids(pid: number): { pid: number; args: string[] }[] {
  return readdirSync('/proc')
    .filter((e) => /^\d+$/.test(e))
    .map((e) => ({ pid: Number(e), info: procInfo(Number(e)) }))
    .filter((c) => c.info?.ppid === pid)
    .map((c) => ({ pid: c.pid, args: c.info!.args }));
}

/** Why `--external` cannot run here (no mosquitto, no initdb), or undefined; under CI=true that fails instead. */
function externalMissing(): string | undefined {
  const mosquitto = findMosquitto();
  const reason = !mosquitto.ok ? mosquitto.reason : spawnSync('sh', ['-c', 'command -v initdb || ls /usr/lib/postgresql/*/bin/initdb'], { stdio: 'ignore' }).status !== 0 ? 'initdb not found (apt-get install postgresql)' : undefined;
  return reason === undefined ? undefined : mosquittoUnavailable(reason, 'bench --external teardown test');
}

type Proc = { pid: number; args: string[] };

type Ended = { code: number | null; signal: NodeJS.Signals | null };

/**
 * Starts a 20-device bench (with `args`), waits for its server and simulator, and hands them
 * to `act`, which returns any more processes and directories to watch; then waits (at most
 * `waitMs`) for the bench to end, and reports which of them it left (a process it signalled
 * as it exited is given 10 s to end). Whatever is still running at the end is killed.
 */
async function benchUntil(args: string[], act: (bench: { pid: number; server: Proc; sim: Proc; stderr: () => string; exited: Promise<Ended> }) => Promise<{ pids?: number[]; dirs?: string[] } | void>, waitMs = 60_000) {
  const out = await mkdtemp(path.join(os.tmpdir(), 'updraft-bench-run-test-'));
  // its own process group, as a shell's job: Ctrl-C's SIGINT goes to the whole group
  const proc = spawn(process.execPath, ['--import', 'tsx', RUN, '--sizes', '20', '--store-shadows', '0', '--out', out, ...args], { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  let stdout = '';
  let stderr = '';
  proc.stdout.on('data', (d) => (stdout += d));
  proc.stderr.on('data', (d) => (stderr += d));
  const exited = new Promise<Ended>((resolve) => proc.on('close', (code, signal) => resolve({ code, signal })));
  const pids: number[] = [proc.pid!];
  const dirs: string[] = [];
  try {
    const sim = await eventually(async () => updraftChildren(proc.pid!, 'sim')[0], 120_000, 'the simulator started');
    const server = updraftChildren(proc.pid!, 'server')[0]!;
    pids.push(server.pid, sim.pid);
    dirs.push(server.args[server.args.indexOf('--data-dir') + 1]!);
    const more = await act({ pid: proc.pid!, server, sim, stderr: () => stderr, exited });
    pids.push(...(more?.pids ?? []));
    dirs.push(...(more?.dirs ?? []));
    const t0 = Date.now();
    const timeout = new Promise<undefined>((resolve) => {
      const timer = setTimeout(resolve, waitMs);
      void exited.then(() => clearTimeout(timer));
    });
    const end = await Promise.race([exited, timeout]);
    const seconds = (Date.now() - t0) / 1000;
    // what the bench left, seen before this function's own cleanup below
    const leftNow = () => ({ processes: pids.slice(1).filter(alive), dirs: dirs.filter((d) => existsSync(d)) });
    for (let i = 0; end && i < 100 && (leftNow().processes.length > 0 || leftNow().dirs.length > 0); i++) await new Promise((r) => setTimeout(r, 100));
    return { end, seconds, stdout, stderr, left: leftNow() };
  } finally {
    // a bench that failed the test: nothing of it stays
    for (const pid of pids.reverse()) if (alive(pid)) process.kill(pid, 'SIGKILL');
    for (const dir of [out, ...dirs]) await rm(dir, { recursive: true, force: true });
  }
}

describe('bench run', () => {
  it('the server dying before the simulator is ready fails the run at once, blaming the server', async () => {
    const r = await benchUntil([], async ({ server }) => void process.kill(server.pid, 'SIGKILL'));
    assert.ok(r.end, `the bench still ran ${r.seconds} s after its server died:\n${r.stderr}`);
    assert.equal(r.end.code, 1, r.stderr);
    // the line names the phase it failed in
    assert.match(r.stderr, /^bench: error: \[1,5\] 20 connected: updraft server exited unexpectedly \(signal SIGKILL\)$/m);
    assert.deepEqual(r.left, { processes: [], dirs: [] }, 'the simulator stopped, the data dir removed');
  });

  it('a failure outside a server names its phase too: the store scenario on a PostgreSQL that cannot be reached', async () => {
    const out = await mkdtemp(path.join(os.tmpdir(), 'updraft-bench-run-test-'));
    try {
      // nothing listens there: creating the store's database fails at once
      const db = `postgres://postgres@127.0.0.1:${await freePort()}/postgres`;
      const r = await runNode(['--import', 'tsx', RUN, '--external', '--db', db, '--sizes', '0', '--store-shadows', '10', '--out', out]);
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, /^bench: error: \[4\] store: connect ECONNREFUSED 127\.0\.0\.1:\d+$/m);
    } finally {
      await rm(out, { recursive: true, force: true });
    }
  });

  for (const [signal, code, group] of [['SIGTERM', 143, false], ['SIGINT', 130, false], ['SIGINT', 130, true]] as const) {
    it(`${signal} to ${group ? 'the process group (Ctrl-C)' : 'the bench alone'} stops the server, the simulator and its processes, and removes their directories, then exits ${code}`, async () => {
      const r = await benchUntil(['--sim-processes', '2'], async ({ pid, sim }) => {
        // the simulator's own processes, and the directory it gave them their devices in
        const shards = await eventually(async () => {
          const found = updraftChildren(sim.pid, 'sim');
          return found.length === 2 ? found : undefined;
        }, 60_000, "the simulator's processes started");
        const devicesFile = shards[0]!.args[shards[0]!.args.indexOf('--devices-file') + 1]!;
        // to the bench alone, as `timeout`, a CI cancel or `kill` do; or to all, as Ctrl-C does
        process.kill(group ? -pid : pid, signal);
        return { pids: shards.map((s) => s.pid), dirs: [path.dirname(devicesFile)] };
      });
      assert.ok(r.end, `the bench still ran ${r.seconds} s after ${signal}:\n${r.stderr}`);
      assert.deepEqual(r.left, { processes: [], dirs: [] }, 'nothing left running, no directory left');
      assert.deepEqual(r.end, { code, signal: null }, r.stderr);
      assert.match(r.stderr, new RegExp(`^bench: ${signal}: stopping`, 'm'));
    });
  }

  it('--external: a second SIGTERM during the teardown still stops the private PostgreSQL and Mosquitto, and removes their directories', async (t) => {
    // neither was registered with the teardown (the broker went with its server's close, the
    // database server after the teardown): a second signal exited and left both running
    const missing = externalMissing();
    if (missing) return t.skip(missing);
    const r = await benchUntil(['--external'], async ({ pid, sim, stderr, exited }) => {
      const children = () => childPids(pid);
      const postgres = children().find((c) => path.basename(c.args[0]!) === 'postgres' && c.args.includes('-k'));
      const mosquitto = children().find((c) => path.basename(c.args[0]!) === 'mosquitto');
      assert.ok(postgres && mosquitto, `the bench's own PostgreSQL and Mosquitto: ${JSON.stringify(children())}`);
      // the teardown stops the simulator first: held stopped, it keeps the teardown busy (15 s)
      process.kill(sim.pid, 'SIGSTOP');
      try {
        process.kill(pid, 'SIGTERM');
        await eventually(async () => (/^bench: SIGTERM: stopping/m.test(stderr()) ? true : undefined), 30_000, 'the teardown started');
        process.kill(pid, 'SIGTERM');
        await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 30_000))]);
      } finally {
        // the SIGTERM the bench sent it as it exited is taken now
        process.kill(sim.pid, 'SIGCONT');
      }
      return {
        pids: [postgres.pid, mosquitto.pid],
        dirs: [postgres.args[postgres.args.indexOf('-k') + 1]!, path.dirname(mosquitto.args[mosquitto.args.indexOf('-c') + 1]!)],
      };
    });
    assert.deepEqual(r.end, { code: 143, signal: null }, r.stderr);
    assert.deepEqual(r.left, { processes: [], dirs: [] }, `nothing left running, no directory left:\n${r.stderr}`);
  });
});

/** Runs `sql` on `url` with a client of its own. */
async function query<T extends pg.QueryResultRow>(url: string, sql: string, values: unknown[] = []): Promise<T[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query<T>(sql, values)).rows;
  } finally {
    await client.end();
  }
}

/**
 * A TCP relay to `port` on 127.0.0.1 that can be frozen: from then on nothing passes either
 * way and new connections are accepted but never answered, as a PostgreSQL server behind a
 * network that went silent.
 */
async function relay(port: number): Promise<{ port: number; freeze(): void; close(): void }> {
  let frozen = false;
  const sockets = new Set<net.Socket>();
  const keep = (s: net.Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => s.destroy());
  };
  const server = net.createServer((client) => {
    keep(client);
    if (frozen) return;
    const upstream = net.connect(port, '127.0.0.1');
    keep(upstream);
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
    client.pipe(upstream).pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    freeze() {
      frozen = true;
      for (const s of sockets) {
        s.unpipe();
        s.pause();
      }
    },
    close() {
      server.close();
      for (const s of sockets) s.destroy();
    },
  };
}

describe('bench run on the PostgreSQL server --db names', () => {
  let server: TestPostgres | undefined;
  let skip: string | undefined;
  /** The server's own database, reached directly; `password` is in the URL the bench gets, and must never be printed. */
  let admin: URL;
  let password: string;
  before(async () => {
    const started = await startTestPostgres();
    if (!started.ok) {
      skip = unavailable(started, 'bench --external --db tests');
      return;
    }
    server = started.server;
    // the server's URL, from one of its databases: the bench may be given any database on it
    admin = new URL(await server.createDatabase());
    await server.dropDatabase(admin.toString());
    admin.pathname = '/postgres';
    // a private test server trusts every local connection: a password is accepted and ignored
    if (!admin.password) admin.password = 's3cret-pw';
    password = decodeURIComponent(admin.password);
  });
  after(() => server?.stop());

  /** The databases bench process `pid` made that exist now (the helper names them `updraft_t<pid>_...`). */
  const databasesOf = async (pid: number) => (await query<{ datname: string }>(admin.toString(), 'SELECT datname FROM pg_database WHERE datname LIKE $1 ORDER BY datname', [`updraft\\_t${pid}\\_%`])).map((r) => r.datname);

  /**
   * Starts a store-only bench on `db` with more shadows than it could insert before it is
   * stopped, waits until `started` names its database (by default: once it exists), hands it
   * to `act`, then waits (at most 60 s) for the bench to end. Whatever it leaves is killed and
   * dropped.
   */
  async function storeBench(db: URL, act: (pid: number, exited: Promise<Ended>) => Promise<void>, started = async (pid: number) => (await databasesOf(pid))[0]) {
    const out = await mkdtemp(path.join(os.tmpdir(), 'updraft-bench-run-test-'));
    const proc = spawn(process.execPath, ['--import', 'tsx', RUN, '--external', '--db', db.toString(), '--sizes', '0', '--store-shadows', '100000000', '--out', out], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    proc.stdout.on('data', (d) => (stdout += d));
    proc.stderr.on('data', (d) => (stderr += d));
    const exited = new Promise<Ended>((resolve) => proc.on('close', (code, signal) => resolve({ code, signal })));
    const pid = proc.pid!;
    try {
      const name = await eventually(() => started(pid), 120_000, "the store scenario's database made");
      await act(pid, exited);
      const timeout = new Promise<undefined>((resolve) => {
        const timer = setTimeout(resolve, 60_000);
        void exited.then(() => clearTimeout(timer));
      });
      const end = await Promise.race([exited, timeout]);
      return { end, stdout, stderr, name, left: await databasesOf(pid) };
    } finally {
      if (alive(pid)) process.kill(pid, 'SIGKILL');
      for (const name of await databasesOf(pid)) await query(admin.toString(), `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await rm(out, { recursive: true, force: true });
    }
  }

  it('SIGTERM during the store scenario drops the database it made, then exits 143', async (t) => {
    if (skip) return t.skip(skip);
    const r = await storeBench(admin, async (pid) => void process.kill(pid, 'SIGTERM'));
    assert.deepEqual(r.end, { code: 143, signal: null }, r.stderr);
    assert.deepEqual(r.left, [], `${r.name} is left on the server:\n${r.stderr}`);
    assert.ok(!`${r.stdout}${r.stderr}`.includes(password), 'no password printed');
  });

  it('a drop that gets no answer is given up after a bound, with one line naming the database (not the password), then exits 143', async (t) => {
    if (skip) return t.skip(skip);
    const silent = await relay(Number(admin.port));
    try {
      const db = new URL(admin);
      db.port = String(silent.port);
      const r = await storeBench(db, async (pid) => {
        silent.freeze();
        process.kill(pid, 'SIGTERM');
      });
      assert.deepEqual(r.end, { code: 143, signal: null }, r.stderr);
      const where = `postgres://${db.username}:***@127.0.0.1:${silent.port}/${r.name}`;
      assert.ok(r.stderr.split('\n').includes(`bench: database ${r.name} was not dropped (no answer within 10 s): drop it with DROP DATABASE ${r.name} WITH (FORCE) on ${where}`), r.stderr);
      assert.deepEqual(r.left, [r.name], 'left for the operator, who was told');
      assert.ok(!`${r.stdout}${r.stderr}`.includes(password), 'no password printed');
    } finally {
      silent.close();
    }
  });

  it('a CREATE DATABASE with no answer within 10 s when the bench is stopped: the line names the database it may still make, and it does', async (t) => {
    // the bench learnt the name only from CREATE's answer: given up on after 10 s, the database
    // was made once its lock was released, and nothing named it. CREATE DATABASE takes a share
    // lock on its template, which a transaction commenting on template1 holds off
    if (skip) return t.skip(skip);
    const holder = new pg.Client({ connectionString: admin.toString() });
    await holder.connect();
    try {
      await holder.query('BEGIN');
      await holder.query("COMMENT ON DATABASE template1 IS 'held by a bench-run test'");
      const waiting = async (pid: number) => {
        const rows = await query<{ query: string }>(admin.toString(), "SELECT query FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE $1", [`CREATE DATABASE updraft\\_t${pid}\\_%`]);
        return rows[0]?.query.split(' ')[2];
      };
      const r = await storeBench(admin, async (pid, exited) => {
        process.kill(pid, 'SIGTERM');
        await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 60_000))]);
        // the bench is gone: the CREATE it sent goes through now
        await holder.query('ROLLBACK');
        await eventually(async () => ((await databasesOf(pid)).length > 0 ? true : undefined), 30_000, 'the database made after the bench gave up on it');
      }, waiting);
      assert.deepEqual(r.end, { code: 143, signal: null }, r.stderr);
      const where = `postgres://${admin.username}:***@127.0.0.1:${admin.port}/${r.name}`;
      assert.ok(r.stderr.split('\n').includes(`bench: database ${r.name} was not dropped (no answer within 10 s to its CREATE DATABASE; it may exist): drop it with DROP DATABASE ${r.name} WITH (FORCE) on ${where}`), r.stderr);
      assert.deepEqual(r.left, [r.name], 'the database the line names');
      assert.ok(!`${r.stdout}${r.stderr}`.includes(password), 'no password printed');
    } finally {
      await holder.query('ROLLBACK').catch(() => undefined);
      await holder.end();
    }
  });
});
