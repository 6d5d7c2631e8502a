/**
 * The one configuration schema (STYLE.md habit 8): every setting with its default, the
 * environment variable and CLI flag that map onto it, and a line of documentation.
 * `docs/configuration.md` is generated from this table by `updraft config --docs`.
 */
import { isIP } from 'node:net';
import type { LogFormat, LogLevel } from '../util/logger.ts';

/** The validated configuration. */
export interface UpdraftConfig {
  /** Directory for the embedded store, artifacts, keys and the operator token. */
  dataDir: string;
  /** `url` set: an external broker instead of the embedded one (host and port then unused). */
  mqtt: { host: string; port: number; url: string; shareGroup: string; tlsPort: number; tlsCert: string; tlsKey: string; maxConnections: number; maxConnectRate: number; maxSubscriptions: number };
  /** State store URL: '' for the embedded SQLite file, or postgres://... */
  db: string;
  /** Bounds of the PostgreSQL state store's calls (with `db` only). */
  postgres: { queryTimeoutSeconds: number; connectTimeoutSeconds: number; migrationTimeoutSeconds: number; leaseTimeoutSeconds: number };
  /** Artifact storage URL: '' for the local directory, or s3://bucket[/prefix]?endpoint=... */
  blob: string;
  http: { host: string; port: number; publicUrl: string; tls: 'on' | 'off'; tlsCert: string; tlsKey: string };
  /** Host names and IPs put into server certificates issued by Updraft's CA (comma-separated). */
  tls: { hosts: string; reloadSeconds: number };
  shadow: { maxDocumentBytes: number; maxDepth: number; maxPending: number; maxNamedShadows: number; tombstoneRetentionHours: number };
  downloads: { urlTtlSeconds: number; maxArtifactBytes: number; tokenTtlSeconds: number; via: 'updraft' | 's3'; memoryCacheBytes: number; ipBinding: 'off' | 'mqtt' };
  logLevel: LogLevel;
  logFormat: LogFormat;
  /** On SIGTERM or SIGINT: seconds of answering /readyz with 503 before stopping. */
  drainSeconds: number;
  /** Where rollout state changes are POSTed ('' : nowhere), and the HMAC key that signs them. */
  webhook: { url: string; secret: string; previousSecret: string };
  /** Devices' logs of failed jobs kept per job (protocol/job-log.ts); days a finished job is kept (0: for ever, jobs/job-retention.ts). */
  jobs: { maxLogsPerJob: number; retentionDays: number };
}

/** One setting. */
export interface Setting {
  /** Dotted path in UpdraftConfig, e.g. `mqtt.port`. */
  path: string;
  /** 'url': a string that is empty or a URL with one of `schemes`. */
  type: 'string' | 'integer' | 'enum' | 'url';
  default: string | number;
  env: string;
  flag: string;
  doc: string;
  min?: number;
  max?: number;
  values?: readonly string[];
  /** URL schemes accepted by a 'url' setting, without the colon. */
  schemes?: readonly string[];
  /** A 'url' setting that paths are appended to (`config/base-url.ts`): no user info, query or fragment, a port from 1 to 65535. */
  base?: boolean;
  /** A 'url' setting whose user info (user:password@) cannot be used: refused at start-up (not at its first use), the error saying this (why, and what to do instead). */
  noUserInfo?: string;
  /**
   * A text setting that cannot be empty, and why: a flag or file value '' (or blanks) is
   * refused, saying this. (An empty environment variable is one not set, for every setting.)
   */
  nonEmpty?: string;
  /** A secret: `updraft config` prints it as "***" (and a URL's password the same way). */
  secret?: boolean;
  /** A text setting's own rule: what is wrong with a (non-empty) value, as words that follow the setting's name, or undefined. */
  check?: (value: string) => string | undefined;
}

/**
 * tls.hosts: each entry an IP address or a DNS host name (RFC 1123 labels, a leading `*.`
 * allowed): anything else was put into the server certificate as a DNS name no client can
 * match (`bad host!`, `1.2.3.999`), and devices failed the TLS handshake with no hint why.
 */
/** A DNS label: `_` is no RFC 1123 letter, but Docker Compose service names (updraft_server) carry it and resolve. */
const LABEL = /^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$/i;

/**
 * mqtt.host, http.host: the address of an interface, or a name that resolves to one. Anything
 * else (`no such host!`, `[::1]`, `0.0.0.0:8080`) passed the configuration, and the start
 * failed with exit code 1 and getaddrinfo's ENOTFOUND once the data directory was set up and
 * the HTTP listener open, naming no setting.
 */
function listenHostProblem(value: string): string | undefined {
  if (isIP(value) !== 0) return undefined;
  if (/^\[.*\]$/.test(value) && isIP(value.slice(1, -1)) === 6) return `must be written without brackets, as ${value.slice(1, -1)}, got ${JSON.stringify(value)}`;
  const labels = value.replace(/\.$/, '').split('.');
  if (value.length <= 253 && labels.every((l) => LABEL.test(l)) && !/^\d+$/.test(labels.at(-1)!)) return undefined;
  return `must be an interface's IP address (0.0.0.0 or :: for all of them) or a host name, got ${JSON.stringify(value)}`;
}

function tlsHostsProblem(value: string): string | undefined {
  for (const host of value.split(',').map((h) => h.trim()).filter((h) => h !== '')) {
    if (isIP(host) !== 0) continue;
    // a fully qualified name's trailing dot (host.example.com.) is the same name, taken before this check
    const labels = (host.startsWith('*.') ? host.slice(2) : host).replace(/\.$/, '').split('.');
    // an all-digit last label is an IP address written wrong (1.2.3.999), never a name
    if (host.length <= 253 && labels.every((l) => LABEL.test(l)) && !/^\d+$/.test(labels.at(-1)!)) continue;
    return `has ${JSON.stringify(host)}, which is neither an IP address nor a host name (letters, digits and hyphens in dot-separated labels, a leading *. allowed); separate entries with commas`;
  }
  return undefined;
}

/** mqtt.shareGroup: MQTT's share name may hold no `/`, `+` or `#` ($share/a/b/... is group a and filter b/...). */
function shareGroupProblem(value: string): string | undefined {
  return /[/+#\u0000]/.test(value) ? `must not hold /, + or # (an MQTT share name cannot: $share/<group>/<filter>), got ${JSON.stringify(value)}` : undefined;
}

/** Every setting. `http.publicUrl` defaults to `http://127.0.0.1:<http.port>` when empty. */
export const SETTINGS: readonly Setting[] = [
  { path: 'dataDir', type: 'string', default: './data', env: 'UPDRAFT_DATA_DIR', flag: 'data-dir', doc: 'Directory for the embedded store, artifacts, signing keys and the operator token.', nonEmpty: 'it would put the store, the keys and the operator token in the working directory; name a directory' },
  { path: 'mqtt.host', type: 'string', default: '0.0.0.0', env: 'UPDRAFT_MQTT_HOST', flag: 'mqtt-host', doc: 'Interface the embedded MQTT broker listens on.', nonEmpty: "give the interface's address (0.0.0.0: all of them)", check: listenHostProblem },
  { path: 'mqtt.port', type: 'integer', default: 1883, env: 'UPDRAFT_MQTT_PORT', flag: 'mqtt-port', doc: 'TCP port of the embedded MQTT broker (MQTT 3.1.1); 0 picks a free port.', min: 0, max: 65535 },
  { path: 'mqtt.tlsPort', type: 'integer', default: 8883, env: 'UPDRAFT_MQTT_TLS_PORT', flag: 'mqtt-tls-port', doc: 'Port of MQTT over TLS with client certificates (mutual auth; device id = certificate CN) on the embedded broker; 0 picks a free port, -1 turns it off.', min: -1, max: 65535 },
  { path: 'mqtt.tlsCert', type: 'string', default: '', env: 'UPDRAFT_MQTT_TLS_CERT', flag: 'mqtt-tls-cert', doc: 'PEM certificate (chain) of the MQTTS listener, with mqtt.tlsKey; empty: issued by Updraft\'s CA for tls.hosts. Refused while mqtt.tlsPort is -1 (it would be ignored).' },
  { path: 'mqtt.tlsKey', type: 'string', default: '', env: 'UPDRAFT_MQTT_TLS_KEY', flag: 'mqtt-tls-key', doc: 'PEM private key of mqtt.tlsCert (unencrypted); a key that is not the certificate\'s is refused at start-up.' },
  { path: 'mqtt.maxConnections', type: 'integer', default: 0, env: 'UPDRAFT_MQTT_MAX_CONNECTIONS', flag: 'mqtt-max-connections', doc: 'Device connections the embedded broker holds at once; a CONNECT beyond them is refused with CONNACK 3 (server unavailable) and the device retries after its backoff. The operator\'s connections are never refused (they count among those held). 0: no limit.', min: 0 },
  { path: 'mqtt.maxConnectRate', type: 'integer', default: 0, env: 'UPDRAFT_MQTT_MAX_CONNECT_RATE', flag: 'mqtt-max-connect-rate', doc: 'New device connections the embedded broker admits per second (bursts of up to one second\'s worth); beyond it a CONNECT is refused with CONNACK 3, so a fleet reconnecting after an outage comes in at a pace the server serves. 0: no limit.', min: 0 },
  { path: 'mqtt.maxSubscriptions', type: 'integer', default: 100, env: 'UPDRAFT_MQTT_MAX_SUBSCRIPTIONS', flag: 'mqtt-max-subscriptions', doc: 'Topic filters one device connection may hold on the embedded broker (subscribing again to a filter it holds takes no new place; unsubscribing frees one); one more is refused with SUBACK 0x80, the connection stays. The Updraft agent holds 3 to 5, an AWS IoT SDK client at most 50 (AWS IoT Core\'s own limit). The operator\'s connections are not limited. An external broker sets its own limits (docs/security.md).', min: 1, max: 100_000 },
  { path: 'mqtt.url', type: 'url', default: '', env: 'UPDRAFT_MQTT_URL', flag: 'mqtt-url', doc: 'External MQTT 5 broker (mqtt://host:1883 or mqtts://...) instead of the embedded one; Updraft connects as user operator with the operator token.', schemes: ['mqtt', 'mqtts'] },
  { path: 'mqtt.shareGroup', type: 'string', default: 'updraft', env: 'UPDRAFT_MQTT_SHARE_GROUP', flag: 'mqtt-share-group', doc: 'Shared-subscription group ($share/<group>/...) of the instances that split device requests on an external broker; only with mqtt.url. No /, + or # (MQTT share names cannot hold them).', nonEmpty: 'it names the group in $share/<group>/...; leave it out for the default, updraft', check: shareGroupProblem },
  { path: 'db', type: 'url', default: '', env: 'UPDRAFT_DB', flag: 'db', doc: 'State store: empty for the embedded SQLite file in dataDir, or postgres://user:password@host:5432/database.', schemes: ['postgres', 'postgresql'] },
  { path: 'postgres.queryTimeoutSeconds', type: 'integer', default: 30, env: 'UPDRAFT_DB_QUERY_TIMEOUT', flag: 'db-query-timeout', doc: 'With db: longest a statement of the state store may run on PostgreSQL, locks waited for included (its statement_timeout: the request fails, the device retries); a query whose answer has not come 5 s after that fails with 503 (a database gone silent: a network partition, a stuck server) and its connection is closed. Not with the embedded store (refused).', min: 1, max: 3600 },
  { path: 'postgres.connectTimeoutSeconds', type: 'integer', default: 30, env: 'UPDRAFT_DB_CONNECT_TIMEOUT', flag: 'db-connect-timeout', doc: 'With db: longest a request waits for a connection to PostgreSQL, a new one or one of the pool\'s (then it fails with 503: the device retries), and longest the rollouts lease and the migrations wait for theirs. Not with the embedded store (refused).', min: 1, max: 3600 },
  { path: 'postgres.leaseTimeoutSeconds', type: 'integer', default: 10, env: 'UPDRAFT_DB_LEASE_TIMEOUT', flag: 'db-lease-timeout', doc: 'With db: longest a query of the leases (rollouts, AWS requests: taking the lock, the leader\'s check of its session at each tick, the release) waits for its answer; none in time is a lease not held or lost (the leader stops leading) and the database counted unreachable. Bounds how long a leader cut from the database goes on leading. Not with the embedded store (refused).', min: 1, max: 3600 },
  { path: 'postgres.migrationTimeoutSeconds', type: 'integer', default: 600, env: 'UPDRAFT_DB_MIGRATION_TIMEOUT', flag: 'db-migration-timeout', doc: 'With db: at start, longest a step of the schema migrations may wait for a lock (another instance migrating, a long transaction on a table they change: lock_timeout) or run (statement_timeout); a step not answered 5 s after that (a database gone silent) fails the start too, saying which. Raise it to migrate a large database. Not with the embedded store (refused).', min: 1, max: 86400 },
  { path: 'blob', type: 'url', default: '', env: 'UPDRAFT_BLOB', flag: 'blob', doc: 'Artifact storage: empty for dataDir/artifacts, or s3://bucket[/prefix]?endpoint=URL&region=R&create=true (credentials from AWS_* variables).', schemes: ['s3'] },
  { path: 'http.host', type: 'string', default: '0.0.0.0', env: 'UPDRAFT_HTTP_HOST', flag: 'http-host', doc: 'Interface the HTTP server (API and downloads) listens on.', nonEmpty: "give the interface's address (0.0.0.0: all of them)", check: listenHostProblem },
  { path: 'http.port', type: 'integer', default: 8080, env: 'UPDRAFT_HTTP_PORT', flag: 'http-port', doc: 'TCP port of the HTTP server; 0 picks a free port.', min: 0, max: 65535 },
  { path: 'http.tls', type: 'enum', default: 'off', env: 'UPDRAFT_HTTP_TLS', flag: 'http-tls', doc: 'on: serve the API and downloads over HTTPS (with http.tlsCert/http.tlsKey, or a certificate issued by Updraft\'s CA for tls.hosts).', values: ['on', 'off'] },
  { path: 'http.tlsCert', type: 'string', default: '', env: 'UPDRAFT_HTTP_TLS_CERT', flag: 'http-tls-cert', doc: 'PEM certificate (chain) of the HTTPS server, with http.tlsKey; empty: issued by Updraft\'s CA. Refused while http.tls is off (it would be ignored).' },
  { path: 'http.tlsKey', type: 'string', default: '', env: 'UPDRAFT_HTTP_TLS_KEY', flag: 'http-tls-key', doc: 'PEM private key of http.tlsCert (unencrypted); a key that is not the certificate\'s is refused at start-up.' },
  { path: 'tls.hosts', type: 'string', default: 'localhost,127.0.0.1', env: 'UPDRAFT_TLS_HOSTS', flag: 'tls-hosts', doc: 'Comma-separated host names and IP addresses devices use to reach this server, put into the server certificates Updraft\'s CA issues. Each is an IP address or a DNS name (letters, digits and hyphens in dot-separated labels, a leading *. allowed); anything else is refused at start.', nonEmpty: 'name the host names or addresses devices use to reach this server', check: tlsHostsProblem },
  { path: 'tls.reloadSeconds', type: 'integer', default: 60, env: 'UPDRAFT_TLS_RELOAD_SECONDS', flag: 'tls-reload-seconds', doc: 'How often the server reads the operator\'s own TLS files again (mqtt.tlsCert/mqtt.tlsKey, http.tlsCert/http.tlsKey): a renewed pair (certbot, cert-manager) is served from the next connection on, without a restart, once both files are a valid pair (the key the certificate\'s, the certificate valid now); a pair that is not (read so twice in a row: not a pair caught between its two files\' replacements) is logged once, and the one served stays. 0: read at start only.', min: 0, max: 86400 },
  { path: 'http.publicUrl', type: 'url', default: '', env: 'UPDRAFT_PUBLIC_URL', flag: 'public-url', doc: 'Base URL devices use to reach the HTTP server, put into download URLs as <publicUrl>/v1/download/... (default http://127.0.0.1:<http.port>): http:// or https://, a host, an optional port (1 to 65535) and path prefix (for a reverse proxy that strips it); no user info, query or fragment.', schemes: ['http', 'https'], base: true },
  { path: 'shadow.maxDocumentBytes', type: 'integer', default: 8192, env: 'UPDRAFT_SHADOW_MAX_BYTES', flag: 'shadow-max-bytes', doc: 'Largest shadow request and stored state, in bytes; larger ones are rejected with 413.', min: 256, max: 1 << 20 },
  { path: 'shadow.maxDepth', type: 'integer', default: 6, env: 'UPDRAFT_SHADOW_MAX_DEPTH', flag: 'shadow-max-depth', doc: 'Deepest nesting of objects and arrays in desired or reported, the section itself counting as level 1 (as reported, {"a":[{"b":1}]} is 3 levels); deeper requests are rejected with 400.', min: 1, max: 32 },
  { path: 'shadow.maxPending', type: 'integer', default: 100000, env: 'UPDRAFT_SHADOW_MAX_PENDING', flag: 'shadow-max-pending', doc: 'Shadow requests queued across all devices before new ones are rejected with 429.', min: 1 },
  { path: 'shadow.maxNamedShadows', type: 'integer', default: 100, env: 'UPDRAFT_SHADOW_MAX_NAMED', flag: 'shadow-max-named', doc: 'Named shadows one device may have (its classic shadow not counted); creating one more is rejected with 403, while those it has are updated and deleted as before, and deleting one frees a place. With shadow.maxDocumentBytes, it bounds what one device can store.', min: 0, max: 100_000 },
  { path: 'shadow.tombstoneRetentionHours', type: 'integer', default: 48, env: 'UPDRAFT_SHADOW_TOMBSTONE_HOURS', flag: 'shadow-tombstone-hours', doc: "Hours a deleted device's shadow tombstones (the rows that keep its deleted shadows' versions) are kept after the device's deletion (updraft device delete); then they are removed by the instance leading rollouts, and the id registered again starts its shadows at version 1, as AWS IoT does 48 hours after a deletion. Not for registered devices, whose tombstones are bounded per device. 0 keeps them for ever.", min: 0, max: 876_000 },
  { path: 'downloads.urlTtlSeconds', type: 'integer', default: 3600, env: 'UPDRAFT_URL_TTL', flag: 'url-ttl', doc: 'Lifetime of a pre-signed download URL and of the signed manifest of an update command, in seconds.', min: 10, max: 7 * 86400 },
  { path: 'downloads.via', type: 'enum', default: 'updraft', env: 'UPDRAFT_DOWNLOADS_VIA', flag: 'downloads-via', doc: 'Where devices download from: updraft (HMAC-signed URLs to /v1/download, bound to device, artifact and expiry, and with downloads.ipBinding to the device\'s address) or s3 (S3 pre-signed URLs straight to the bucket, bound to artifact and expiry only; needs blob=s3://...).', values: ['updraft', 's3'] },
  { path: 'downloads.ipBinding', type: 'enum', default: 'off', env: 'UPDRAFT_DOWNLOAD_IP_BINDING', flag: 'download-ip-binding', doc: 'mqtt: bind each download URL also to the address the device\'s MQTT connection comes from, as the embedded broker sees it (a URL issued while the device is not connected is not bound). Only for devices that reach MQTT and HTTP from one address (private networks, static addresses): not behind NAT pools or a proxy, nor across IPv4 and IPv6, where downloads would be refused. Not with an external broker (mqtt.url) nor downloads.via s3.', values: ['off', 'mqtt'] },
  { path: 'downloads.memoryCacheBytes', type: 'integer', default: 64 * 1024 ** 2, env: 'UPDRAFT_DOWNLOAD_CACHE_BYTES', flag: 'download-cache-bytes', doc: 'Memory for artifacts served to devices (least recently used leave first; artifacts over an eighth of it are streamed from storage); 0 turns it off.', min: 0 },
  { path: 'downloads.tokenTtlSeconds', type: 'integer', default: 900, env: 'UPDRAFT_TOKEN_TTL', flag: 'token-ttl', doc: 'Lifetime of a temporary download credential (state/{id}/credentials/request), in seconds.', min: 10, max: 86400 },
  { path: 'downloads.maxArtifactBytes', type: 'integer', default: 2 * 1024 ** 3, env: 'UPDRAFT_MAX_ARTIFACT_BYTES', flag: 'max-artifact-bytes', doc: 'Largest artifact accepted by `artifact add`, in bytes.', min: 1 },
  { path: 'logLevel', type: 'enum', default: 'info', env: 'UPDRAFT_LOG_LEVEL', flag: 'log-level', doc: 'debug, info, warn, error or silent.', values: ['debug', 'info', 'warn', 'error', 'silent'] },
  { path: 'drainSeconds', type: 'integer', default: 0, env: 'UPDRAFT_DRAIN_SECONDS', flag: 'drain-seconds', doc: 'On SIGTERM or SIGINT, how long to go on serving while GET /readyz answers 503, so that a load balancer takes the instance out of rotation before it stops (a second signal stops at once).', min: 0, max: 3600 },
  { path: 'webhook.url', type: 'url', default: '', env: 'UPDRAFT_WEBHOOK_URL', flag: 'webhook-url', doc: 'Endpoint that receives a JSON POST when a rollout starts, pauses, moves to its next wave, completes, is canceled or aborts (docs/rollouts.md); empty: none. The final URL (a redirect fails the delivery: it is not followed), without user info (user:password@, refused: put a token in the path or query, and sign with webhook.secret).', schemes: ['http', 'https'], secret: true, noUserInfo: "a delivery cannot carry it; put the receiver's token in the URL's path or query, and sign deliveries with webhook.secret" },
  { path: 'webhook.secret', type: 'string', default: '', env: 'UPDRAFT_WEBHOOK_SECRET', flag: 'webhook-secret', doc: 'HMAC-SHA256 key of the x-updraft-signature header of webhook deliveries (give it in the environment, not as a flag, which other users can read).', secret: true },
  { path: 'webhook.previousSecret', type: 'string', default: '', env: 'UPDRAFT_WEBHOOK_PREVIOUS_SECRET', flag: 'webhook-previous-secret', doc: 'While webhook.secret is being rotated: the secret it replaces. Deliveries then also carry x-updraft-signature-previous, the same HMAC with this key, so the receiver can move from the old secret to the new one at any moment without refusing a delivery (docs/security.md); remove it once the receiver holds the new one. Only with webhook.secret.', secret: true },
  { path: 'jobs.maxLogsPerJob', type: 'integer', default: 1000, env: 'UPDRAFT_MAX_LOGS_PER_JOB', flag: 'max-logs-per-job', doc: "Devices' logs of failed attempts (state/{id}/job-log, at most 16 KiB each) kept per job; the first devices' are kept, later ones refused with 409; the logs of a take-back's attempts (.cancel, .rollback) only while the job holds fewer than half. 0 keeps none.", min: 0, max: 1_000_000 },
  { path: 'jobs.retentionDays', type: 'integer', default: 0, env: 'UPDRAFT_JOB_RETENTION_DAYS', flag: 'job-retention-days', doc: "Days a finished job (COMPLETED, CANCELED, ABORTED) is kept after its last change; then it is deleted with its executions, their counts and its devices' logs, as updraft job delete does, a few at a time by the instance leading rollouts. 0 (the default) keeps jobs for ever: they are the operator's records of what was installed where, so deleting them must be asked for.", min: 0, max: 36_500 },
  { path: 'logFormat', type: 'enum', default: 'text', env: 'UPDRAFT_LOG_FORMAT', flag: 'log-format', doc: 'text (time, level, message, key=value fields; values with spaces quoted) or json (one object per line, for log pipelines).', values: ['text', 'json'] },
];
