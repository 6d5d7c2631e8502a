/**
 * The two stores a suite runs the real server on: embedded SQLite, and a private PostgreSQL
 * (test/helpers/postgres.ts), each server with its own data directory and database.
 */
import { startTestPostgres, unavailable } from './postgres.ts';
import { startTestServer, type TestServer } from './server.ts';

/** A started server and how to stop it (with its PostgreSQL), or why none could start: the suite skips with it. */
export type StoreServer = { ts: TestServer; stop: () => Promise<void> } | string;

/** Each store's name and how to start a server on it; `what` names the test in a skip message ("the PostgreSQL ... test"). */
export function storeServers(what: string): [name: string, start: () => Promise<StoreServer>][] {
  return [
    [
      'SQLite',
      async () => {
        const ts = await startTestServer();
        return { ts, stop: () => ts.close() };
      },
    ],
    [
      'PostgreSQL',
      async () => {
        const pg = await startTestPostgres();
        if (!pg.ok) return unavailable(pg, what);
        const server = pg.server;
        const ts = await startTestServer({ flags: { db: await server.createDatabase() } });
        return {
          ts,
          stop: async () => {
            await ts.close();
            await server.stop();
          },
        };
      },
    ],
  ];
}
