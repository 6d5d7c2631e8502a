/**
 * A throw-away PostgreSQL server for tests: `initdb` into a temp directory and `postgres`
 * on a free port, never the machine's shared server. As root (initdb refuses root), both
 * run as the `postgres` system user through spawn's uid/gid. When no server can be started,
 * tests skip with the reason, except under CI=true, where they must fail loudly.
 * `UPDRAFT_TEST_POSTGRES_URL` points the tests at an existing server instead (each test
 * still gets a fresh database on it).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { chown, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { freePort } from './free-port.ts';

/** A running server on which tests create fresh databases. */
export interface TestPostgres {
  /** Creates an empty database; resolves with its URL. */
  createDatabase(): Promise<string>;
  /** Drops a database made by createDatabase (after every client disconnected). */
  dropDatabase(url: string): Promise<void>;
  /** The private server's postmaster (its children end with it); absent on the UPDRAFT_TEST_POSTGRES_URL server. */
  pid?: number;
  /**
   * The private server's data directory, `<temp dir>/data`: the temp dir (`updraft-pg-*`)
   * also holds its socket, and stop() removes it whole. Absent on the UPDRAFT_TEST_POSTGRES_URL server.
   */
  dataDir?: string;
  stop(): Promise<void>;
}

/** The server, or why there is none (a message for the skip, or the CI failure). */
export type TestPostgresResult = { ok: true; server: TestPostgres } | { ok: false; reason: string };

let counter = 0;

/** Starts a private server (or uses UPDRAFT_TEST_POSTGRES_URL). Never throws. */
export async function startTestPostgres(): Promise<TestPostgresResult> {
  const external = process.env.UPDRAFT_TEST_POSTGRES_URL;
  try {
    if (external) return { ok: true, server: onServer(external, async () => {}) };
    return { ok: true, server: await startPrivate() };
  } catch (err) {
    return { ok: false, reason: (err as Error).message };
  }
}

/** For a `describe`: throws under CI, else returns the skip message. */
export function unavailable(result: { ok: false; reason: string }, what: string): string {
  const message = `${what} skipped: no PostgreSQL could be started (${result.reason}); install PostgreSQL (initdb, postgres) or set UPDRAFT_TEST_POSTGRES_URL`;
  if (process.env.CI === 'true') throw new Error(`CI=true: ${message}`);
  return message;
}

/** The path of a PostgreSQL program (pg_dump, pg_restore, ...) of the version tests run. */
export function postgresTool(name: string): string {
  return path.join(binDir(), name);
}

function binDir(): string {
  const root = '/usr/lib/postgresql';
  if (existsSync(root)) {
    const versions = readdirSync(root).filter((v) => existsSync(path.join(root, v, 'bin', 'initdb'))).sort((a, b) => Number(b) - Number(a));
    if (versions[0]) return path.join(root, versions[0], 'bin');
  }
  const which = spawnSync('sh', ['-c', 'command -v initdb'], { encoding: 'utf8' });
  if (which.status === 0 && which.stdout.trim()) return path.dirname(which.stdout.trim());
  throw new Error('initdb not found under /usr/lib/postgresql/*/bin or on PATH');
}

/** uid/gid of the `postgres` user when we are root (PostgreSQL refuses to run as root). */
function runAs(): { uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const line = readFileSync('/etc/passwd', 'utf8').split('\n').find((l) => l.startsWith('postgres:'));
  if (!line) throw new Error('running as root and there is no postgres user to run the server as');
  const [, , uid, gid] = line.split(':');
  return { uid: Number(uid), gid: Number(gid) };
}

/** Whether a process is alive (signal 0: EPERM is alive, another user's). */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Whether process `pid` is a postgres started on `data` (its command line: `postgres -D <data> ...`). */
function servesFrom(pid: number, data: string): boolean {
  let args: string[];
  try {
    args = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
  } catch {
    return false;
  }
  return path.basename(args[0] ?? '') === 'postgres' && args[args.indexOf('-D') + 1] === data && args.indexOf('-D') >= 0;
}

/**
 * Removes what a test process killed before its stop() left (a run cut by a timeout): each
 * `updraft-pg-*` directory whose `owner.pid` names a process that is gone, its postmaster
 * (from `data/postmaster.pid`) stopped first. They piled up in /tmp, one server and a few MB
 * each. Directories of live owners (tests running beside) and of no owner file are left.
 * Returns the directories removed.
 */
export async function sweepOrphans(tmp = os.tmpdir()): Promise<string[]> {
  const removed: string[] = [];
  for (const name of readdirSync(tmp).filter((n) => n.startsWith('updraft-pg-'))) {
    const dir = path.join(tmp, name);
    let owner: number;
    try {
      owner = Number(readFileSync(path.join(dir, 'owner.pid'), 'utf8'));
    } catch {
      continue;
    }
    if (!Number.isSafeInteger(owner) || owner <= 0 || alive(owner)) continue;
    let postmaster: number | undefined;
    try {
      postmaster = Number(readFileSync(path.join(dir, 'data', 'postmaster.pid'), 'utf8').split('\n')[0]);
    } catch {
      postmaster = undefined;
    }
    // only that very postmaster: a pid file left by one that died (OOM, a reboot with /tmp kept)
    // may name a process that has nothing to do with it now
    if (postmaster !== undefined && Number.isSafeInteger(postmaster) && postmaster > 0 && alive(postmaster) && servesFrom(postmaster, path.join(dir, 'data'))) {
      process.kill(postmaster, 'SIGQUIT'); // immediate shutdown: its data is thrown away
      for (const deadline = Date.now() + 10_000; alive(postmaster) && Date.now() < deadline; ) await new Promise((r) => setTimeout(r, 50));
    }
    await rm(dir, { recursive: true, force: true });
    removed.push(dir);
  }
  return removed;
}

async function startPrivate(): Promise<TestPostgres> {
  const bin = binDir();
  const user = runAs();
  await sweepOrphans().catch(() => {}); // never a reason for this test not to run
  const dir = await mkdtemp(path.join(os.tmpdir(), 'updraft-pg-'));
  await writeFile(path.join(dir, 'owner.pid'), String(process.pid));
  if (user) await chown(dir, user.uid, user.gid);
  const data = path.join(dir, 'data');
  const init = spawnSync(path.join(bin, 'initdb'), ['-D', data, '-A', 'trust', '-U', 'postgres', '-E', 'UTF8', '--locale=C', '--no-sync'], {
    encoding: 'utf8',
    ...(user ?? {}),
  });
  if (init.status !== 0) {
    await rm(dir, { recursive: true, force: true });
    throw new Error(`initdb failed: ${(init.stderr || init.error?.message || '').trim().split('\n').slice(-2).join(' ')}`);
  }
  const port = await freePort();
  // fsync off: a test server's durability across power loss is not under test, its speed is the suite's
  const child: ChildProcess = spawn(
    path.join(bin, 'postgres'),
    ['-D', data, '-p', String(port), '-k', dir, '-c', 'listen_addresses=127.0.0.1', '-c', 'fsync=off', '-c', 'max_connections=200'],
    { stdio: ['ignore', 'ignore', 'pipe'], ...(user ?? {}) },
  );
  let log = '';
  child.stderr!.on('data', (d) => (log = (log + d.toString()).slice(-4000)));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const admin = `postgres://postgres@127.0.0.1:${port}/postgres`;
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`postgres exited at start: ${log.trim().split('\n').slice(-2).join(' ')}`);
    const c = new pg.Client({ connectionString: admin });
    try {
      await c.connect();
      await c.end();
      break;
    } catch {
      await c.end().catch(() => {});
      if (Date.now() > deadline) {
        child.kill('SIGKILL');
        throw new Error(`postgres did not accept connections within 30 s: ${log.trim().split('\n').slice(-2).join(' ')}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  const shutdown = async () => {
    child.kill('SIGINT'); // fast shutdown
    await exited;
    await rm(dir, { recursive: true, force: true });
  };
  return { ...onServer(admin, shutdown), pid: child.pid!, dataDir: data };
}

function onServer(adminUrl: string, shutdown: () => Promise<void>): TestPostgres {
  const created: string[] = [];
  const withAdmin = async (sql: string) => {
    const c = new pg.Client({ connectionString: adminUrl });
    await c.connect();
    try {
      await c.query(sql);
    } finally {
      await c.end();
    }
  };
  const dbUrl = (name: string) => {
    const u = new URL(adminUrl);
    u.pathname = `/${name}`;
    return u.toString();
  };
  return {
    async createDatabase() {
      const name = `updraft_t${process.pid}_${Date.now().toString(36)}_${counter++}`;
      await withAdmin(`CREATE DATABASE ${name}`);
      created.push(name);
      return dbUrl(name);
    },
    async dropDatabase(url: string) {
      const name = new URL(url).pathname.slice(1);
      if (!/^updraft_t\w+$/.test(name)) throw new Error(`refusing to drop ${name}: not a test database`);
      await withAdmin(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    },
    async stop() {
      await shutdown();
    },
  };
}
