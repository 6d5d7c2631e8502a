/**
 * The device installer seam (pattern step 7): the agent downloads and verifies, the installer
 * puts the software in place, health-checks it, and rolls back on its own when that fails.
 * `SlotInstaller` (A/B slots on disk) is the default; `SimulatedInstaller` serves the demo.
 */
import type { DesiredSoftware } from '../protocol/software.ts';
import type { Logger } from '../util/logger.ts';

/** What runs on the device now. */
export interface InstalledSoftware {
  /** Artifact name, when known (a fresh device may not know it). */
  name?: string;
  /** Version that runs now. */
  version: string;
  /** SHA-256 of what runs now, when known. */
  sha256?: string;
  /** Size in bytes of what runs now, when known. */
  size?: number;
  /**
   * True when it was installed and switched to but its health check has not passed (a crash,
   * and a state lost with it, came between): the agent has `recover` check it again, and keep
   * or roll it back, instead of taking it for installed (at start when no job is in flight,
   * else when that job's command comes).
   */
  unchecked?: boolean;
  /** With `unchecked`: the job that installed it, when known; its outcome is reported once checked. */
  jobId?: string;
}

/** What an installation may use besides the file. */
export interface InstallContext {
  /** Aborted when the agent stops: the installer rolls back what it started and throws. */
  signal?: AbortSignal;
  /**
   * The job's logger: what an installer writes here at info level and above goes to the
   * agent's log and into the job's log, which the server keeps when the job fails
   * (`updraft job log`). Write what whoever diagnoses a failure would want: steps, tool output.
   */
  logger?: Logger;
}

/** Result of `recover` after a crash while installing. */
export interface RecoveryResult {
  /**
   * `installed`: the new software runs and passed its health check; `rolled-back`: the old
   * software runs again (see `reason`); `not-started`: nothing was changed, the old software
   * runs and the install may simply be attempted again.
   */
  outcome: 'installed' | 'rolled-back' | 'not-started';
  /** Why it rolled back, for the FAILURE report. */
  reason?: string;
}

/** Puts verified software in place on the device. */
export interface Installer {
  /** What runs now; undefined when nothing was ever installed (the agent reports `0.0.0`). */
  current(): Promise<InstalledSoftware | undefined>;
  /**
   * Installs the verified `file` as `sw` and health-checks it. Throws UpdraftError with code
   * INSTALL or HEALTH_CHECK and the reason when it fails, after rolling back, so that the old
   * software runs again. Once it resolves, `current()` must name `sw.version`: the agent
   * checks, and reports the job FAILURE otherwise (the device would claim a version it does
   * not run).
   */
  install(file: string, sw: DesiredSoftware, ctx: InstallContext): Promise<void>;
  /**
   * Called on start when the agent crashed while `install(…, sw)` ran: finish it or roll it
   * back. Installers without crash state may omit it (the agent then installs again). Also
   * called at start with no job in flight when `current()` says `unchecked`, with `sw` taken
   * from `current()` (its `jobId` empty when unknown).
   */
  recover?(sw: DesiredSoftware, ctx: InstallContext): Promise<RecoveryResult>;
}

/** True when `installed` is exactly `sw` (same version, and same SHA-256 when both are known). */
export function isInstalled(installed: InstalledSoftware | undefined, sw: DesiredSoftware): boolean {
  if (!installed || installed.version !== sw.version) return false;
  if (installed.sha256 !== undefined && installed.sha256 !== sw.sha256) return false;
  if (installed.name !== undefined && installed.name !== sw.name) return false;
  return true;
}
