/**
 * `updraft demo`: the whole Software Update pattern for N simulated devices in one command.
 * A real server on free ports (embedded broker, replica, store, HTTP), a real artifact
 * uploaded over the API, N real agents (the agent library with a simulated installer)
 * connected over MQTT and downloading over HTTP. Ends with one summary line.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { SimulatedInstaller } from '../agent/simulated-installer.ts';
import { UpdateAgent } from '../agent/agent.ts';
import { loadConfig } from '../config/load-config.ts';
import { isTerminal } from '../jobs/execution-state.ts';
import { parseReportedSoftware } from '../protocol/software.ts';
import { UpdraftServer } from '../server/updraft-server.ts';
import { createLogger, silentLogger } from '../util/logger.ts';

/** Options of the demo. */
export interface DemoOptions {
  devices: number;
  /** Artifact size in bytes. */
  artifactBytes: number;
  /** Give up after this long (ms). */
  timeoutMs: number;
  /** Probability (0..1) that a simulated install fails its health check (default 0). */
  failureRate?: number;
  /** Where progress goes (stderr by default). */
  progress?: (line: string, final: boolean) => void;
}

/** Outcome of a demo run. */
export interface DemoResult {
  devices: number;
  updated: number;
  version: string;
  seconds: number;
  /** Device ids that did not end with SUCCESS on the new version, with why. */
  failures: { deviceId: string; reason: string }[];
}

const FROM = '1.0.0';
const TO = '2.0.0';

/** Runs the demo and resolves with its outcome; everything it started is stopped. */
export async function runDemo(opts: DemoOptions): Promise<DemoResult> {
  const progress = opts.progress ?? ((line, final) => process.stderr.write(process.stderr.isTTY && !final ? `\r${line}` : `${line}\n`));
  const dir = await mkdtemp(path.join(os.tmpdir(), 'updraft-demo-'));
  const config = loadConfig({ flags: { 'data-dir': path.join(dir, 'server'), 'mqtt-port': 0, 'http-port': 0, 'mqtt-host': '127.0.0.1', 'http-host': '127.0.0.1', 'mqtt-tls-port': 0, 'log-level': 'error' } });
  const server = new UpdraftServer(config, { logger: createLogger({ level: 'error' }) });
  const agents: UpdateAgent[] = [];
  try {
    await server.start();
    const brokerUrl = `mqtt://127.0.0.1:${server.broker.port}`;
    const ids = Array.from({ length: opts.devices }, (_, i) => `demo-${String(i + 1).padStart(String(opts.devices).length, '0')}`);

    // every device reports what it runs before the deployment targets it
    const seen = new Set<string>();
    let allSeen!: () => void;
    const ready = new Promise<void>((resolve) => (allSeen = resolve));
    const offSeen = server.events.on('shadow.updated', (e) => {
      if (e.current.name === '' && e.current.state.reported?.software) seen.add(e.current.deviceId);
      if (seen.size === ids.length) allSeen();
    });
    // security is on in the demo too: every device is registered and connects with its secret
    const api = `http://127.0.0.1:${server.http.port}/api/v1`;
    const auth = { authorization: `Bearer ${server.operatorToken}` };
    const secrets = new Map<string, string>();
    for (let i = 0; i < ids.length; i += 100) {
      await Promise.all(
        ids.slice(i, i + 100).map(async (deviceId) => {
          const r = await fetch(`${api}/devices`, { method: 'POST', headers: { ...auth, 'content-type': 'application/json' }, body: JSON.stringify({ deviceId, tags: ['demo'] }) });
          if (!r.ok) throw new Error(`registering ${deviceId} failed: ${await r.text()}`);
          secrets.set(deviceId, ((await r.json()) as { secret: string }).secret);
        }),
      );
    }
    for (const deviceId of ids) {
      const agent = new UpdateAgent({
        deviceId,
        brokerUrl,
        username: deviceId,
        password: secrets.get(deviceId)!,
        installer: new SimulatedInstaller({ initial: { name: 'fw', version: FROM }, durationMs: 50, failureRate: opts.failureRate ?? 0 }),
        stateDir: path.join(dir, 'devices', deviceId),
        // provisioned with the server's public key: every command's manifest is verified
        signingPublicKey: server.security.signingKey.publicKeyPem,
        logger: silentLogger,
      });
      agents.push(agent);
    }
    progress(`demo: connecting ${ids.length} devices...`, false);
    await Promise.all(agents.map((a) => a.start()));
    await withTimeout(ready, opts.timeoutMs, 'devices did not all report their state');
    offSeen();

    // step 2: put the build into artifact storage, over the real API
    const added = await fetch(`${api}/artifacts?name=fw&version=${TO}`, { method: 'POST', headers: auth, body: randomBytes(opts.artifactBytes) });
    if (!added.ok) throw new Error(`artifact upload failed: ${await added.text()}`);

    // step 3: deploy; count executions reaching a final state
    let finished = 0;
    let done!: () => void;
    const allDone = new Promise<void>((resolve) => (done = resolve));
    const offExec = server.events.on('execution.changed', (e) => {
      if (isTerminal(e.current.status) && !isTerminal(e.previous?.status ?? 'QUEUED')) finished++;
      if (finished === ids.length) done();
    });
    const started = performance.now();
    const res = await fetch(`${api}/deployments`, { method: 'POST', headers: { ...auth, 'content-type': 'application/json' }, body: JSON.stringify({ devices: ids, artifact: `fw@${TO}` }) });
    if (!res.ok) throw new Error(`deployment failed: ${await res.text()}`);
    const ticker = setInterval(() => progress(`demo: ${finished}/${ids.length} devices finished (${((performance.now() - started) / 1000).toFixed(1)} s)`, false), 200);
    try {
      await withTimeout(allDone, opts.timeoutMs, 'not every device finished').catch(() => undefined);
    } finally {
      clearInterval(ticker);
      offExec();
    }
    const seconds = (performance.now() - started) / 1000;
    await server.tracker.idle();

    // the verdict comes from what the devices reported, as stored by the replica
    const failures: DemoResult['failures'] = [];
    for (const deviceId of ids) {
      const sw = parseReportedSoftware((await server.store.getShadow(deviceId, ''))?.state.reported?.software);
      if (sw?.status !== 'SUCCESS' || sw.version !== TO) failures.push({ deviceId, reason: sw ? `${sw.status} on ${sw.version}${sw.error ? `: ${sw.error}` : ''}` : 'no report' });
    }
    return { devices: ids.length, updated: ids.length - failures.length, version: TO, seconds, failures };
  } finally {
    await Promise.all(agents.map((a) => a.stop().catch(() => undefined)));
    await server.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([p, new Promise<T>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what} within ${ms / 1000} s`)), ms)))]).finally(() => clearTimeout(timer));
}
