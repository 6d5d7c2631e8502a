/**
 * The AWS job document of an Updraft job (issue 9). AWS resolves its pre-signed URL
 * placeholders (`${aws:iot:s3-presigned-url:...}`) for each device when it hands the
 * document out; Updraft does the same with its own update command: the software with a
 * download URL signed for this device and the signed manifest, built when the document is
 * sent and never stored (a stored URL would expire while a device is offline).
 */
import type { JsonObject } from '../protocol/json.ts';
import type { DesiredSoftware, SoftwareCommand } from '../protocol/software.ts';

/** `operation` of every Updraft job document; the v1 SDK's `jobs` class routes on it. */
export const UPDRAFT_JOB_OPERATION = 'updraft.software-update';

/**
 * The job document: `{ operation, software: { name, version, sha256, size, jobId, url,
 * urlExpiresAt, manifest, signature } }` (`software.jobId` is the id Updraft's own agent
 * would see; AWS clients use the job id of the topic).
 */
export function jobDocument(software: DesiredSoftware, command: SoftwareCommand | undefined): JsonObject {
  return { operation: UPDRAFT_JOB_OPERATION, software: { ...(command ?? software) } as unknown as JsonObject };
}
