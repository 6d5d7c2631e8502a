/**
 * `npm run bench -- --external`: the production parts instead of the embedded ones, as
 * docs/deployment.md sets them up. A private Mosquitto 2 per server on free ports, configured
 * with what `updraft broker mosquitto-config` writes (passwd from the hashes the registry
 * keeps, the per-device ACL), and PostgreSQL: a private server (`initdb` in a temp dir) or
 * the one `--db <url>` names, with a fresh database per bench server either way (a rollout
 * targets the fleet by query, so fleets must not meet). The private servers come from
 * the same helpers the tests start theirs with (test/helpers), never the machine's own; the
 * databases on the --db server are made here (sharedDatabase), named before they are made.
 *
 * Mosquitto's own counter of PUBLISH packets received ($SYS, every second) stands in for the
 * embedded broker's; the bench's operator may read it and use `bench/#` (the raw-rate
 * clients), nothing else is added to the generated configuration.
 */
import { rmSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import mqtt from 'mqtt';
import pg from 'pg';
import { mosquittoPasswd } from '../src/broker/mosquitto-config.ts';
import type { ApiClient } from '../src/cli/api-client.ts';
import { brokerCredentials } from '../src/cli/broker-credentials.ts';
import { UpdraftError } from '../src/errors.ts';
import { redactUrl } from '../src/util/redact-url.ts';
import { findMosquitto, startTestMosquitto } from '../test/helpers/mosquitto.ts';
import { startTestPostgres, type TestPostgres } from '../test/helpers/postgres.ts';
import { procCpuSeconds, procRss } from './processes.ts';
import { mustUndo } from './teardown.ts';

/** The external parts of one bench server. */
export interface ExternalParts {
  /** Where devices connect. */
  deviceUrl: string;
  /** Where Updraft (and the bench's operator clients) connect. */
  serviceUrl: string;
  dbUrl: string;
  /** Admits the devices registered so far (passwd rewritten, broker reloaded). */
  admit(api: ApiClient): Promise<void>;
  /** PUBLISH packets Mosquitto has received so far (from $SYS, refreshed every second). */
  published(): Promise<number>;
  /** Mosquitto's own process. */
  broker: { rss(): number; cpuSeconds(): number };
  stop(): Promise<void>;
}

/** The PostgreSQL server --db names (any database on it), where the databases go instead of a private server. */
let sharedUrl: string | undefined;
/** Databases made on it so far: the last part of their names. */
let made = 0;
let postgres: Promise<TestPostgres> | undefined;
/** Takes the private server off the teardown's list, once stopExternal stopped it. */
let forgetPostgres = (): void => {};

/** How long the teardown of a failed or stopped run (or a run's own drop) waits for a database to be dropped. */
const DROP_TIMEOUT_MS = 10_000;

/** Databases go on the server `url` names (any database on it) instead of a private one. */
export function usePostgres(url: string): void {
  sharedUrl = url;
}

/**
 * The PostgreSQL server of this bench run, started (or reached) on first use. A private one is
 * registered with the teardown as it starts (teardown.ts): a run that fails or is stopped
 * stops it after the servers that use it (started after it, they are undone first), and an
 * exit before that (a second SIGINT or SIGTERM) still ends it and removes its directory. It
 * was stopped only after the teardown: a second signal left it running.
 */
function privatePostgres(): Promise<TestPostgres> {
  if (postgres) return postgres;
  let quickStop: (() => void) | undefined;
  forgetPostgres = mustUndo(stopExternal, () => quickStop?.());
  postgres = startTestPostgres().then((r) => {
    if (!r.ok) throw new UpdraftError('CONFIG', `--external: no PostgreSQL could be started or reached (${r.reason}); install PostgreSQL or pass --db postgres://...`);
    quickStop = postgresQuickStop(r.server);
    return r.server;
  });
  return postgres;
}

/**
 * The synchronous stop of a private server the helper started, for an exit: its postmaster
 * gets SIGQUIT, an immediate shutdown (no checkpoint: nothing more is written in the
 * directory being removed), and the helper's temp dir holding its data directory goes.
 * Undefined for a server the helper did not start (UPDRAFT_TEST_POSTGRES_URL).
 */
export function postgresQuickStop(server: TestPostgres): (() => void) | undefined {
  const { pid, dataDir } = server;
  if (pid === undefined || dataDir === undefined) return undefined;
  const dir = path.dirname(dataDir);
  return () => {
    try {
      process.kill(pid, 'SIGQUIT');
    } finally {
      if (path.basename(dir).startsWith('updraft-pg-')) rmSync(dir, { recursive: true, force: true, maxRetries: 3 });
    }
  };
}

/** Stops the private PostgreSQL, if one was started. */
export async function stopExternal(): Promise<void> {
  const started = postgres;
  postgres = undefined;
  try {
    if (started) await (await started).stop();
  } finally {
    forgetPostgres();
    forgetPostgres = () => {};
  }
}

/**
 * A fresh database, for a bench server or the store scenario; `drop` removes it (once, waiting
 * at most DROP_TIMEOUT_MS) and never rejects. A private server's databases go with its
 * directory (stopExternal): a drop that fails leaves the operator nothing to do.
 */
export async function freshDatabase(): Promise<{ url: string; drop(): Promise<void> }> {
  if (sharedUrl !== undefined) return sharedDatabase(sharedUrl);
  const server = await privatePostgres();
  const url = await server.createDatabase();
  let dropping: Promise<void> | undefined;
  return { url, drop: () => (dropping ??= within(DROP_TIMEOUT_MS, server.dropDatabase(url)).catch(() => undefined)) };
}

/**
 * A fresh database on the server --db names, where a database outlives the run. One it could
 * not drop is one line on stderr naming it, for the operator to drop; a run that fails or is
 * stopped (SIGTERM, SIGINT) drops it too (teardown.ts), or names it if it exits first. Its
 * name is chosen before CREATE DATABASE is sent: a CREATE with no answer within
 * DROP_TIMEOUT_MS (a lock on the template, a server gone silent) may still make it after the
 * teardown gave up on it, and the line names it. With the test helper's databases (named as
 * CREATE returned), such a database was left unnamed.
 */
async function sharedDatabase(server: string): Promise<{ url: string; drop(): Promise<void> }> {
  const name = `updraft_t${process.pid}_${Date.now().toString(36)}_${made++}`;
  const u = new URL(server);
  u.pathname = `/${name}`;
  const url = u.toString();
  const say = (line: string) => process.stderr.write(`${line}\n`);
  let answered = false;
  const created = onServer(server, `CREATE DATABASE ${name}`).finally(() => (answered = true));
  let dropping: Promise<void> | undefined;
  const drop = (): Promise<void> =>
    (dropping ??= (async () => {
      try {
        try {
          await within(DROP_TIMEOUT_MS, created);
        } catch (err) {
          // refused: never made (its failure is the run's). No answer yet: it may be made still
          if (!answered) say(notDropped(url, `${(err as Error).message} to its CREATE DATABASE; it may exist`));
          return;
        }
        await within(DROP_TIMEOUT_MS, onServer(server, `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)).catch((err: unknown) => say(notDropped(url, (err as Error).message)));
      } finally {
        forget();
      }
    })());
  // registered before the database exists: a signal as CREATE DATABASE returns still drops it
  const forget = mustUndo(drop, () => say(notDropped(url, 'the bench exited first')));
  try {
    await created;
  } catch (err) {
    forget();
    throw err;
  }
  return { url, drop };
}

/** Runs `sql` on `server`, on a connection of its own. */
async function onServer(server: string, sql: string): Promise<void> {
  const client = new pg.Client({ connectionString: server });
  try {
    await client.connect();
    await client.query(sql);
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** The line naming a database the bench made and could not drop, for the operator (never its password). */
function notDropped(url: string, why: string): string {
  const name = new URL(url).pathname.slice(1);
  return `bench: database ${name} was not dropped (${why.split('\n')[0]}): drop it with DROP DATABASE ${name} WITH (FORCE) on ${redactUrl(url)}`;
}

/** `work`, or a rejection once `ms` have passed without its answer. */
async function within<T>(ms: number, work: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`no answer within ${ms / 1000} s`)), ms)));
  try {
    return await Promise.race([work, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Starts Mosquitto and gets a fresh database, for a server whose operator token is `token`. */
export async function startExternal(token: string): Promise<ExternalParts> {
  const found = findMosquitto();
  if (!found.ok) throw new UpdraftError('CONFIG', `--external: ${found.reason}`);
  const broker = await startTestMosquitto(
    found.bin,
    { operatorToken: token, devices: [], secrets: new Map() },
    { acl: "\n# the bench's own: raw-rate clients and the message counter\nuser operator\ntopic readwrite bench/#\ntopic read $SYS/#\n", conf: '\nsys_interval 1\n' },
  );
  // registered as it starts, as the private PostgreSQL is: stopped by a failed or stopped
  // run's teardown even if what follows here fails, and at an exit before that (a second
  // signal) sent SIGTERM, its directory (the fleet's password hashes) removed. Only the
  // server's close() stopped it: a second signal left it running
  const forgetBroker = mustUndo(
    () => broker.stop(),
    () => {
      try {
        process.kill(broker.pid, 'SIGTERM');
      } finally {
        rmSync(broker.dir, { recursive: true, force: true, maxRetries: 3 });
      }
    },
  );
  const counter = await mqtt.connectAsync(broker.serviceUrl, { clientId: `bench-counter-${broker.devicePort}`, username: 'operator', password: token, reconnectPeriod: 0 });
  let received = 0;
  let updates = 0;
  counter.on('message', (_topic, payload) => {
    received = Number(payload.toString());
    updates++;
  });
  await counter.subscribeAsync('$SYS/broker/publish/messages/received');
  const db = await freshDatabase();

  return {
    deviceUrl: broker.deviceUrl,
    serviceUrl: broker.serviceUrl,
    dbUrl: db.url,
    async admit(api) {
      // what `updraft broker mosquitto-config` writes, from the hashes the registry kept
      const passwd = mosquittoPasswd({ operatorToken: token, devices: await brokerCredentials(api), secrets: new Map() });
      await writeFile(path.join(broker.dir, 'passwd'), passwd.text);
      await broker.reload();
    },
    async published() {
      // the value of the next $SYS period: everything received before this call is in it
      const seen = updates;
      const deadline = Date.now() + 5000;
      while (updates < seen + 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
      return received;
    },
    broker: { rss: () => procRss(broker.pid), cpuSeconds: () => procCpuSeconds(broker.pid) },
    async stop() {
      await counter.endAsync();
      await broker.stop();
      forgetBroker();
      await db.drop();
    },
  };
}
