/**
 * `updraft/agent`: the device side of Updraft's Software Update pattern.
 *
 * @example
 * ```ts
 * import { readFileSync } from 'node:fs';
 * import { UpdateAgent, SlotInstaller } from 'updraft/agent';
 *
 * const agent = new UpdateAgent({
 *   deviceId: 'dev-1',
 *   brokerUrl: 'mqtt://updraft.local:1883',
 *   username: 'dev-1',
 *   password: process.env.DEVICE_SECRET,
 *   // the operator's public key (updraft keys export-public): unsigned software is refused
 *   signingPublicKey: readFileSync('/opt/app/signing-key.pub', 'utf8'),
 *   installer: new SlotInstaller({ dir: '/opt/app', healthCheck: '$UPDRAFT_SLOT/artifact --self-test' }),
 *   stateDir: '/opt/app/.updraft',
 * });
 * agent.on('status', (e) => console.error(`${e.jobId}: ${e.status}`));
 * agent.on('job-finished', (e) => console.error(`${e.jobId} done: ${e.status} ${e.error ?? ''}`));
 * await agent.start();
 * // … later
 * await agent.stop();
 * ```
 *
 * The constructor checks the options: every one missing, of the wrong type or out of range
 * (and every unknown one) is named, one line each, in one UpdraftError with code CONFIG.
 *
 * Bring your own installer by implementing `Installer` (`current`, `install`, optionally
 * `recover`); `install` must roll back by itself and throw UpdraftError INSTALL or
 * HEALTH_CHECK with the reason when it fails (`throw new UpdraftError('HEALTH_CHECK', why)`).
 */
export { UpdateAgent } from './agent.ts';
export { AGENT_DEFAULTS, type UpdateAgentOptions } from './agent-options.ts';
export { checkUpdateAgentOptions, updateAgentOptionProblems } from './agent-options-check.ts';
/** What an installer throws when it fails (INSTALL, HEALTH_CHECK), and what a refused start or bad options throw (CONFIG). */
export { UpdraftError, type ErrorCode } from '../errors.ts';
export type { AgentEvents, StatusEvent, ProgressEvent, JobFinishedEvent } from './agent-events.ts';
export { isInstalled, type Installer, type InstalledSoftware, type InstallContext, type RecoveryResult } from './installer.ts';
export { SlotInstaller, SLOT_INSTALLER_DEFAULTS, ARTIFACT_FILE, type SlotInstallerOptions, type SlotManifest, type Slot } from './slot-installer.ts';
export { SimulatedInstaller, seededRandom, type SimulatedInstallerOptions } from './simulated-installer.ts';
export { downloadArtifact, DOWNLOAD_DEFAULTS, type DownloadOptions, type DownloadResult, type Downloader } from './downloader.ts';
export {
  FileAgentStateStore,
  MemoryAgentStateStore,
  MAX_FINISHED_JOBS,
  type AgentStateStore,
  type AgentStateData,
  type InFlightUpdate,
  type InFlightPhase,
  type FinishedJob,
  type JobOutcome,
} from './agent-state.ts';
export { runAgentDaemon, DEFAULT_BROKER_URL, type AgentDaemonOptions } from './daemon.ts';
export { AgentStoppedError } from './shadow-requester.ts';
