/**
 * What an agent understands beyond the base protocol, reported in
 * `reported.agent.features` with the first report of each connection, so that the server and
 * operators can tell older agents apart before relying on a newer behaviour (a root rotation,
 * windows in the device's own time): `updraft doctor` and a job's dry run name the devices
 * whose agents lack what is about to be used. An agent that reports no list predates them
 * all. Append only: a feature is never renamed or removed.
 */
export const AGENT_FEATURES = [
  /** Reports the install gate's waits (`reported.software.waiting`): the step timer waits for them. */
  'install-wait',
  /** Follows the root rotations a command carries (`rootRotations`). */
  'root-rotation',
  /** Renews its client certificate over MQTT (`state/{id}/certificate/renew`). */
  'certificate-renewal',
  /** Holds the install until a window of the command's `installWindows` is open in its time zone. */
  'install-windows',
] as const;

/** One of `AGENT_FEATURES`. */
export type AgentFeature = (typeof AGENT_FEATURES)[number];

/** True when a device's `reported.agent` says it has `feature`. */
export function hasAgentFeature(reportedAgent: unknown, feature: AgentFeature): boolean {
  if (typeof reportedAgent !== 'object' || reportedAgent === null) return false;
  const features = (reportedAgent as { features?: unknown }).features;
  return Array.isArray(features) && features.includes(feature);
}
