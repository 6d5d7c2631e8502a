/** Wiring for agent tests: broker, artifact server, the test playing the shadow server, temp dirs. */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { UpdateAgent } from '../../../src/agent/agent.ts';
import type { UpdateAgentOptions } from '../../../src/agent/agent-options.ts';
import type { AgentEvents } from '../../../src/agent/agent-events.ts';
import type { InstallContext, InstalledSoftware, Installer, RecoveryResult } from '../../../src/agent/installer.ts';
import type { DesiredSoftware } from '../../../src/protocol/software.ts';
import { createLogger } from '../../../src/util/logger.ts';
import { ArtifactServer, sha256, testContent } from './artifact-server.ts';
import { startBroker, type TestBroker } from './broker.ts';
import { FakeShadowServer } from './shadow-server.ts';

/** Wraps a real installer and counts calls (not a mock: the wrapped installer does the work). */
export class CountingInstaller implements Installer {
  installs = 0;
  recovers = 0;
  constructor(readonly inner: Installer) {}
  current(): Promise<InstalledSoftware | undefined> {
    return this.inner.current();
  }
  install(file: string, sw: DesiredSoftware, ctx: InstallContext): Promise<void> {
    this.installs++;
    return this.inner.install(file, sw, ctx);
  }
  recover(sw: DesiredSoftware, ctx: InstallContext): Promise<RecoveryResult> {
    this.recovers++;
    return this.inner.recover ? this.inner.recover(sw, ctx) : Promise.resolve({ outcome: 'not-started' });
  }
}

/** Everything one agent test needs. */
export class AgentFixture {
  readonly deviceId = 'dev-1';
  readonly content = testContent(256 * 1024 + 3);
  broker!: TestBroker;
  http!: ArtifactServer;
  server!: FakeShadowServer;
  root!: string;
  private readonly agents: UpdateAgent[] = [];

  async start(): Promise<void> {
    this.root = await mkdtemp(path.join(os.tmpdir(), 'updraft-agent-'));
    this.broker = await startBroker();
    this.http = new ArtifactServer(this.content);
    await this.http.start();
    this.server = await FakeShadowServer.start(this.broker.url, this.deviceId, () => ({ url: this.http.url(), urlExpiresAt: Math.floor(Date.now() / 1000) + 3600 }));
  }

  get stateDir(): string {
    return path.join(this.root, 'install', '.updraft');
  }

  get installDir(): string {
    return path.join(this.root, 'install');
  }

  /** Desired software for the test artifact. */
  software(jobId: string, version = '2.0.0'): DesiredSoftware {
    return { name: 'fw', version, sha256: sha256(this.content), size: this.content.length, jobId };
  }

  agent(installer: Installer, extra: Partial<UpdateAgentOptions> = {}): UpdateAgent {
    const agent = new UpdateAgent({
      deviceId: this.deviceId,
      brokerUrl: this.broker.url,
      installer,
      stateDir: this.stateDir,
      requestTimeoutMs: 5000,
      retryDelayMs: 20,
      progressIntervalMs: 0,
      downloadSettings: { retryDelayMs: 5 },
      mqttOptions: { reconnectPeriod: 50 },
      logger: createLogger({ level: process.env.UPDRAFT_TEST_LOG === '1' ? 'debug' : 'silent' }),
      // the fake shadow server signs nothing; signatures are tested against the real server (test/security/)
      allowUnsigned: true,
      ...extra,
    });
    this.agents.push(agent);
    return agent;
  }

  async close(): Promise<void> {
    for (const a of this.agents) await a.stop();
    await this.server.close();
    await this.http.close();
    await this.broker.close();
    await rm(this.root, { recursive: true, force: true });
  }
}

/** Resolves with the first event `name` matching `pred`; the timeout is only a hang guard. */
export function nextEvent<K extends keyof AgentEvents>(agent: UpdateAgent, name: K, pred: (...args: AgentEvents[K]) => boolean = () => true, timeoutMs = 20_000): Promise<AgentEvents[K][0]> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      agent.off(name, listener as never);
      reject(new Error(`no ${String(name)} event within ${timeoutMs} ms`));
    }, timeoutMs);
    const listener = (...args: AgentEvents[K]) => {
      if (!pred(...args)) return;
      clearTimeout(timer);
      agent.off(name, listener as never);
      resolve(args[0]);
    };
    agent.on(name, listener as never);
  });
}

/** Polls `check` until it holds (the test timeout is the hang guard). */
export async function eventually(check: () => Promise<boolean> | boolean, what: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const RANK: Record<string, number> = { IDLE: 0, DOWNLOADING: 1, VERIFYING: 2, INSTALLING: 3, SUCCESS: 4, FAILURE: 4 };

/** Statuses never go backwards within one job. */
export function isMonotonic(statuses: string[]): boolean {
  return statuses.every((s, i) => i === 0 || RANK[s]! >= RANK[statuses[i - 1]!]!);
}
