/**
 * A registered fleet as real agents (the agent library over real MQTT and HTTP) with
 * simulated installers, patient enough to ride out a server restart: what the end-to-end
 * rollout tests drive. Records each agent's acknowledged outcome (pattern step 9).
 */
import path from 'node:path';
import { MemoryAgentStateStore, SimulatedInstaller, UpdateAgent } from '../../src/agent/index.ts';
import type { SimDevice } from '../../src/sim/fleet-simulator.ts';
import { silentLogger } from '../../src/util/logger.ts';

/** The fleet's agents, their installers, and the outcomes the server acknowledged. */
export interface FleetAgents {
  agents: UpdateAgent[];
  installers: Map<string, SimulatedInstaller>;
  /** deviceId → `<jobId>:<SUCCESS|FAILURE>` of the last job the server acknowledged. */
  acknowledged: Map<string, string>;
  start(): Promise<void>;
  stop(): Promise<void>;
}

/** Agents for `fleet` on `brokerUrl`, running fw 1.0.0, keeping their files under `dir`. */
export function fleetAgents(fleet: SimDevice[], opts: { brokerUrl: string; dir: string }): FleetAgents {
  const installers = new Map<string, SimulatedInstaller>();
  const acknowledged = new Map<string, string>();
  const agents = fleet.map((d) => {
    const installer = new SimulatedInstaller({ initial: { name: 'fw', version: '1.0.0' }, durationMs: 20 });
    installers.set(d.deviceId, installer);
    const agent = new UpdateAgent({
      deviceId: d.deviceId,
      username: d.deviceId,
      password: d.secret,
      brokerUrl: opts.brokerUrl,
      installer,
      stateStore: new MemoryAgentStateStore(),
      stateDir: path.join(opts.dir, d.deviceId),
      logger: silentLogger,
      allowUnsigned: true,
      requestTimeoutMs: 3000,
      retryDelayMs: 200,
      maxRetryDelayMs: 2000,
      mqttOptions: { reconnectPeriod: 500 },
    });
    // job-finished is emitted only after the server acknowledged the outcome (step 9)
    agent.on('job-finished', (e) => acknowledged.set(d.deviceId, `${e.jobId}:${e.status}`));
    return agent;
  });
  return {
    agents,
    installers,
    acknowledged,
    start: async () => {
      await Promise.all(agents.map((a) => a.start()));
    },
    stop: async () => {
      await Promise.all(agents.map((a) => a.stop().catch(() => undefined)));
    },
  };
}
