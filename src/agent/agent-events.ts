/** The events an UpdateAgent emits (typed EventEmitter map). */
import type { DeltaMessage } from '../protocol/shadow-messages.ts';
import type { AgentStatus, InstallWait } from '../protocol/software.ts';

/**
 * The agent entered a phase of a job (DOWNLOADING, VERIFYING, and again for each "not now" of
 * the install gate, INSTALLING) or came to its outcome (SUCCESS, FAILURE: `job-finished`
 * follows once the server acknowledged it). Never IDLE: nothing is emitted when the agent
 * reports that it runs no job. Always a job's: its id and target version are always there.
 */
export interface StatusEvent {
  /** The job (the `jobId` of its command). */
  jobId: string;
  status: Exclude<AgentStatus, 'IDLE'>;
  /** Target version of the job. */
  version: string;
  /** Why it failed (FAILURE). */
  error?: string;
  /** VERIFYING: the install gate put the install off (one event per "not now"). */
  waiting?: InstallWait;
}

/** Download progress of the job in flight (throttled like the reports). */
export interface ProgressEvent {
  jobId: string;
  /** 0..1 */
  progress: number;
}

/** A job ended and the server acknowledged the outcome (pattern step 9). */
export interface JobFinishedEvent {
  jobId: string;
  status: 'SUCCESS' | 'FAILURE';
  error?: string;
  /** The version running now. */
  version: string;
  /**
   * A stay command's outcome (`<id>.cancel`): the job it took back (the server ended that
   * attempt: timed out, canceled). Its SUCCESS says only that the device stayed on what it runs.
   */
  takesBack?: string;
  /**
   * A FAILURE because a newer command called the job off before it installed: that job's id
   * (a retry's, a stay's, another job's). It runs next; this is no outcome of the update.
   */
  supersededBy?: string;
}

/** Event name → listener arguments. */
export interface AgentEvents {
  status: [StatusEvent];
  progress: [ProgressEvent];
  'job-finished': [JobFinishedEvent];
  /** Every delta received, raw (other keys than `software` are for library users). */
  delta: [DeltaMessage];
  /** The MQTT connection came up or went down. */
  connection: [{ online: boolean }];
  /**
   * A connection attempt failed (a CONNACK that refused it, no broker there, none in time, a socket closed before any CONNACK),
   * once per outage as it is logged: why, and the MQTT reason code when the error carries one (a refused CONNACK's return code).
   */
  'connection-error': [{ error: string; reasonCode?: number }];
  /** The client certificate was renewed and saved (`certificateRenewal`): its expiry, in seconds since the epoch; used from the next connection. */
  'certificate-renewed': [{ expiresAt: number }];
}
