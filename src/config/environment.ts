/**
 * The `UPDRAFT_*` environment variables Updraft reads, and a check for the ones it does not.
 * A misspelt variable (UPDRAFT_MQTT_PROT) was ignored without a word, so a server ran on its
 * defaults, perhaps on the embedded store instead of PostgreSQL, while its operator believed it
 * configured. It is warned about rather than refused (as a config file's typo is): the
 * environment is shared with the CLI, the agent and whatever else runs in that shell or
 * container, so a name unknown here is not surely a mistake.
 */
import { closest } from './file-shape.ts';
import { SETTINGS } from './schema.ts';

/** Variables read by the CLI, the agent and the agent's hooks, not server settings. */
export const CLIENT_ENVIRONMENT: readonly string[] = [
  'UPDRAFT_SERVER', // the CLI's server URL
  'UPDRAFT_TOKEN', // the CLI's operator token
  'UPDRAFT_RETRY_FOR', // how long the CLI's reads wait for a server that cannot answer for now
  'UPDRAFT_BROKER', // the agent's broker URL
  'UPDRAFT_DEVICE_PASSWORD', // the agent's device secret
  'UPDRAFT_SIGNING_KEY', // the agent's trusted signing key
  'UPDRAFT_ROOT_KEY', // the agent's trusted offline root
  'UPDRAFT_TIME_ZONE', // the agent's time zone
  'UPDRAFT_DEVICE_TYPE', // the agent's device type
  'UPDRAFT_ARTIFACT', // given to the agent's install gate
  'UPDRAFT_VERSION', // given to the install gate and the health check
  'UPDRAFT_JOB_ID', // given to the install gate
  'UPDRAFT_SLOT', // given to the health check
];

const PREFIX = 'UPDRAFT_';
/** Names reserved for the test suite's own switches. */
const TEST_PREFIX = 'UPDRAFT_TEST_';

/** One warning per `UPDRAFT_*` variable of `env` that nothing in Updraft reads, with the name meant when one is close. */
export function unknownEnvironment(env: Record<string, string | undefined>): string[] {
  const known = new Set([...SETTINGS.map((s) => s.env), ...CLIENT_ENVIRONMENT]);
  const warnings: string[] = [];
  for (const name of Object.keys(env).sort()) {
    if (!name.startsWith(PREFIX) || name.startsWith(TEST_PREFIX) || known.has(name)) continue;
    // compared without the common prefix, which would make every name look close
    const near = closest(name.slice(PREFIX.length), [...known].map((k) => k.slice(PREFIX.length)));
    warnings.push(`environment variable ${name} is not an Updraft setting and is ignored${near ? ` (did you mean ${PREFIX}${near}?)` : ''}`);
  }
  return warnings;
}
