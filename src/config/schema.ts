/**
 * The one configuration schema (STYLE.md habit 8): every setting with its default, the
 * environment variable and CLI flag that map onto it, and a line of documentation.
 * `docs/configuration.md` is generated from this table by `updraft config --docs`.
 */
import type { LogLevel } from '../util/logger.ts';

/** The validated configuration. */
export interface UpdraftConfig {
  /** Directory for the embedded store, artifacts, keys and the operator token. */
  dataDir: string;
  mqtt: { host: string; port: number };
  http: { host: string; port: number; publicUrl: string };
  shadow: { maxDocumentBytes: number; maxDepth: number; maxPending: number };
  downloads: { urlTtlSeconds: number; maxArtifactBytes: number };
  logLevel: LogLevel;
}

/** One setting. */
export interface Setting {
  /** Dotted path in UpdraftConfig, e.g. `mqtt.port`. */
  path: string;
  type: 'string' | 'integer' | 'enum';
  default: string | number;
  env: string;
  flag: string;
  doc: string;
  min?: number;
  max?: number;
  values?: readonly string[];
}

/** Every setting. `http.publicUrl` defaults to `http://127.0.0.1:<http.port>` when empty. */
export const SETTINGS: readonly Setting[] = [
  { path: 'dataDir', type: 'string', default: './data', env: 'UPDRAFT_DATA_DIR', flag: 'data-dir', doc: 'Directory for the embedded store, artifacts, signing keys and the operator token.' },
  { path: 'mqtt.host', type: 'string', default: '0.0.0.0', env: 'UPDRAFT_MQTT_HOST', flag: 'mqtt-host', doc: 'Interface the embedded MQTT broker listens on.' },
  { path: 'mqtt.port', type: 'integer', default: 1883, env: 'UPDRAFT_MQTT_PORT', flag: 'mqtt-port', doc: 'TCP port of the embedded MQTT broker (MQTT 3.1.1); 0 picks a free port.', min: 0, max: 65535 },
  { path: 'http.host', type: 'string', default: '0.0.0.0', env: 'UPDRAFT_HTTP_HOST', flag: 'http-host', doc: 'Interface the HTTP server (API and downloads) listens on.' },
  { path: 'http.port', type: 'integer', default: 8080, env: 'UPDRAFT_HTTP_PORT', flag: 'http-port', doc: 'TCP port of the HTTP server; 0 picks a free port.', min: 0, max: 65535 },
  { path: 'http.publicUrl', type: 'string', default: '', env: 'UPDRAFT_PUBLIC_URL', flag: 'public-url', doc: 'Base URL devices use to reach the HTTP server, put into download URLs (default http://127.0.0.1:<http.port>).' },
  { path: 'shadow.maxDocumentBytes', type: 'integer', default: 8192, env: 'UPDRAFT_SHADOW_MAX_BYTES', flag: 'shadow-max-bytes', doc: 'Largest shadow request and stored state, in bytes; larger ones are rejected with 413.', min: 256, max: 1 << 20 },
  { path: 'shadow.maxDepth', type: 'integer', default: 6, env: 'UPDRAFT_SHADOW_MAX_DEPTH', flag: 'shadow-max-depth', doc: 'Deepest object nesting inside desired or reported; deeper requests are rejected with 400.', min: 1, max: 32 },
  { path: 'shadow.maxPending', type: 'integer', default: 100000, env: 'UPDRAFT_SHADOW_MAX_PENDING', flag: 'shadow-max-pending', doc: 'Shadow requests queued across all devices before new ones are rejected with 429.', min: 1 },
  { path: 'downloads.urlTtlSeconds', type: 'integer', default: 3600, env: 'UPDRAFT_URL_TTL', flag: 'url-ttl', doc: 'Lifetime of a pre-signed download URL, in seconds.', min: 10, max: 7 * 86400 },
  { path: 'downloads.maxArtifactBytes', type: 'integer', default: 2 * 1024 ** 3, env: 'UPDRAFT_MAX_ARTIFACT_BYTES', flag: 'max-artifact-bytes', doc: 'Largest artifact accepted by `artifact add`, in bytes.', min: 1 },
  { path: 'logLevel', type: 'enum', default: 'info', env: 'UPDRAFT_LOG_LEVEL', flag: 'log-level', doc: 'debug, info, warn, error or silent.', values: ['debug', 'info', 'warn', 'error', 'silent'] },
];
