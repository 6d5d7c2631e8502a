/** Starts a real Updraft server on free ports with a temporary data directory. */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { loadConfig } from '../../src/config/load-config.ts';
import { UpdraftServer } from '../../src/server/updraft-server.ts';
import { createLogger, type Logger } from '../../src/util/logger.ts';

/** A running test server and how to reach it. */
export interface TestServer {
  server: UpdraftServer;
  dataDir: string;
  mqttUrl: string;
  httpUrl: string;
  token: string;
  /** Stops the server (keeps the data directory). */
  stop(): Promise<void>;
  /** Stops the server and deletes the data directory. */
  close(): Promise<void>;
}

/** Starts a server; pass `dataDir` to restart on existing state, `flags` to override settings. */
export async function startTestServer(options: { dataDir?: string; flags?: Record<string, unknown>; logger?: Logger } = {}): Promise<TestServer> {
  const dataDir = options.dataDir ?? (await mkdtemp(path.join(os.tmpdir(), 'updraft-test-')));
  const config = loadConfig({ flags: { 'data-dir': dataDir, 'mqtt-port': 0, 'http-port': 0, 'mqtt-host': '127.0.0.1', 'http-host': '127.0.0.1', 'mqtt-tls-port': 0, ...options.flags } });
  const server = new UpdraftServer(config, { logger: options.logger ?? createLogger({ level: process.env.UPDRAFT_TEST_LOG === '1' ? 'debug' : 'silent' }) });
  await server.start();
  const stop = () => server.stop();
  return {
    server,
    dataDir,
    mqttUrl: `mqtt://127.0.0.1:${server.broker.port}`,
    httpUrl: `http://127.0.0.1:${server.http.port}`,
    token: server.operatorToken,
    stop,
    close: async () => {
      await stop();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

/** Registers a device on the test server; resolves with its secret. */
export async function registerDevice(ts: TestServer, deviceId: string, extra: { attributes?: Record<string, string | number | boolean>; tags?: string[] } = {}): Promise<string> {
  return (await ts.server.registry.register({ deviceId, ...extra })).secret;
}

/** One operator request to `ts`'s REST API (JSON in and out): its status and parsed body. */
export async function apiJson(ts: TestServer, method: string, route: string, body?: unknown): Promise<{ status: number; body: any }> {
  const res = await fetch(ts.httpUrl + route, {
    method,
    headers: { authorization: `Bearer ${ts.token}`, 'content-type': 'application/json' },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  return { status: res.status, body: (await res.json()) as any };
}
