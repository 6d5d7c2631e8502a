/**
 * Builds the configuration from defaults, an optional JSON file, environment variables and
 * CLI flags (later sources win), validating every setting and reporting every error at once.
 */
import { readFileSync } from 'node:fs';
import { UpdraftError } from '../errors.ts';
import { baseUrlProblem } from './base-url.ts';
import { fileShapeErrors } from './file-shape.ts';
import { SETTINGS, type Setting, type UpdraftConfig } from './schema.ts';
import { redactUrl } from '../util/redact-url.ts';
import { parseS3Url } from '../artifacts/s3-url.ts';

/** Where settings come from. Flags are keyed by flag name (`mqtt-port`), file by dotted path. */
export interface ConfigSources {
  file?: string;
  env?: Record<string, string | undefined>;
  flags?: Record<string, unknown>;
}

function getPath(obj: unknown, dotted: string): unknown {
  let cur: unknown = obj;
  for (const k of dotted.split('.')) {
    if (typeof cur !== 'object' || cur === null) return undefined;
    cur = (cur as Record<string, unknown>)[k];
  }
  return cur;
}

function setPath(obj: Record<string, unknown>, dotted: string, value: unknown): void {
  const keys = dotted.split('.');
  let cur = obj;
  for (const k of keys.slice(0, -1)) cur = (cur[k] ??= {}) as Record<string, unknown>;
  cur[keys.at(-1)!] = value;
}

function coerce(s: Setting, raw: unknown, source: string, errors: string[]): string | number | undefined {
  if (s.type === 'integer') {
    const n = typeof raw === 'number' ? raw : typeof raw === 'string' && raw.trim() !== '' ? Number(raw) : NaN;
    if (!Number.isSafeInteger(n)) return void errors.push(`${s.path} (${source}) must be an integer, got ${JSON.stringify(raw)}`);
    if (s.min !== undefined && n < s.min) return void errors.push(`${s.path} (${source}) must be at least ${s.min}, got ${n}`);
    if (s.max !== undefined && n > s.max) return void errors.push(`${s.path} (${source}) must be at most ${s.max}, got ${n}`);
    return n;
  }
  if (typeof raw !== 'string') return void errors.push(`${s.path} (${source}) must be a string, got ${JSON.stringify(raw)}`);
  if (s.type === 'url' && raw !== '') {
    // a base URL first: its own reasons (a port out of range, a query) say more than "not a URL"
    const problem = s.base ? baseUrlProblem(raw) : undefined;
    if (problem !== undefined) {
      return void errors.push(`${s.path} (${source}) must be an absolute http:// or https:// URL (a host, an optional port from 1 to 65535 and path; no user info, query or fragment), but ${problem}: got "${redactUrl(raw)}"`);
    }
    let url: URL;
    try {
      url = new URL(raw);
    } catch {
      return void errors.push(`${s.path} (${source}) must be a URL like ${s.schemes![0]}://..., got ${s.secret ? 'something else (not shown: it is a secret)' : `"${raw.replace(/\/\/[^@/]*@/, '//***@')}"`}`);
    }
    const scheme = url.protocol.slice(0, -1);
    if (!s.schemes!.includes(scheme)) return void errors.push(`${s.path} (${source}) must be a ${s.schemes!.join(' or ')} URL, got ${scheme}://`);
    if (s.noUserInfo && (url.username || url.password)) {
      return void errors.push(`${s.path} (${source}) must hold no user info (user:password@): ${s.noUserInfo}; got ${s.secret ? 'a URL with user info (not shown: it is a secret)' : `"${redactUrl(raw)}"`}`);
    }
  }
  if (s.type === 'enum' && !s.values!.includes(raw)) return void errors.push(`${s.path} (${source}) must be one of ${s.values!.join(', ')}, got "${raw}"`);
  return raw;
}

/** Loads and validates; throws one UpdraftError CONFIG (status 400) listing every problem, unknown keys of the file included. */
export function loadConfig(sources: ConfigSources = {}): UpdraftConfig {
  const errors: string[] = [];
  let fileValues: unknown = {};
  if (sources.file) {
    try {
      fileValues = JSON.parse(readFileSync(sources.file, 'utf8'));
      for (const e of fileShapeErrors(fileValues, SETTINGS)) errors.push(`config file ${sources.file}: ${e}`);
    } catch (err) {
      errors.push(`config file ${sources.file}: ${(err as Error).message}`);
    }
  }
  const env = sources.env ?? {};
  const flags = sources.flags ?? {};
  const out: Record<string, unknown> = {};
  /** Where each setting's value came from, for errors about settings that depend on each other. */
  const from = new Map<string, string>();
  for (const s of SETTINGS) {
    let value = coerce(s, s.default, 'default', errors);
    from.set(s.path, 'default');
    const take = (raw: unknown, source: string) => {
      const v = coerce(s, raw, source, errors);
      if (v === undefined) return;
      value = v;
      from.set(s.path, source);
    };
    const fromFile = getPath(fileValues, s.path);
    if (fromFile !== undefined) take(fromFile, `file ${sources.file}`);
    if (env[s.env] !== undefined) take(env[s.env], `env ${s.env}`);
    if (flags[s.flag] !== undefined) take(flags[s.flag], `flag --${s.flag}`);
    setPath(out, s.path, value);
  }
  // settings that depend on each other
  const partial = out as unknown as UpdraftConfig;
  if (partial.blob) {
    // its parameters are checked here, with the rest: found when the store was made, a typo
    // (pathStyel=true) came alone, after every other error was fixed, with exit code 1
    try {
      parseS3Url(partial.blob);
    } catch (err) {
      errors.push(`blob (${from.get('blob')}): ${(err as Error).message}`);
    }
  }
  if (partial.downloads?.via === 's3' && !partial.blob) errors.push('downloads.via s3 needs S3 artifact storage: set blob (--blob s3://bucket?endpoint=...)');
  if (partial.downloads?.ipBinding === 'mqtt') {
    // the address comes from the embedded broker's connection; S3 checks no address
    if (partial.mqtt?.url) errors.push('downloads.ipBinding mqtt needs the embedded broker: an external one (mqtt.url) does not tell Updraft where a device connects from');
    if (partial.downloads.via === 's3') errors.push('downloads.ipBinding mqtt needs downloads.via updraft: an S3 pre-signed URL cannot be bound to an address');
  }
  errors.push(...tlsFileErrors(partial, (p) => `${p} (${from.get(p)})`, (p) => from.get(p)!));
  // a usage error (status 400): the CLI exits with code 2, as for a bad flag
  if (errors.length > 0) throw new UpdraftError('CONFIG', `invalid configuration: ${errors.join('; ')}`, { status: 400 });
  const config = out as unknown as UpdraftConfig;
  return config;
}

/**
 * The operator's own certificate and key of a TLS listener go together, and with the listener
 * turned on. Given while it is off they were ignored without a word: the API, its tokens and
 * the downloads went out in clear text to an operator who believed them encrypted. So they are
 * refused rather than warned about (a warning is lost in a supervisor's log; this fails closed).
 */
function tlsFileErrors(c: UpdraftConfig, named: (path: string) => string, sourceOf: (path: string) => string): string[] {
  const listeners = [
    { prefix: 'http', on: c.http?.tls === 'on', cert: c.http?.tlsCert, key: c.http?.tlsKey, off: 'http.tls is off: add --http-tls on (UPDRAFT_HTTP_TLS=on) to serve HTTPS with them, or leave them out' },
    { prefix: 'mqtt', on: (c.mqtt?.tlsPort ?? -1) >= 0, cert: c.mqtt?.tlsCert, key: c.mqtt?.tlsKey, off: `mqtt.tlsPort is -1 (${sourceOf('mqtt.tlsPort')}): the MQTTS listener is off; give it a port, or leave them out` },
  ];
  const errors: string[] = [];
  for (const l of listeners) {
    const given = [l.cert ? `${l.prefix}.tlsCert` : '', l.key ? `${l.prefix}.tlsKey` : ''].filter((p) => p !== '');
    if (given.length === 0) continue;
    if (!l.on) errors.push(`${given.map(named).join(' and ')} ${given.length === 1 ? 'is' : 'are'} set but ${l.off}`);
    else if (given.length === 1) {
      const missing = l.cert ? `${l.prefix}.tlsKey` : `${l.prefix}.tlsCert`;
      errors.push(`${named(given[0]!)} is set without ${missing}: give both the certificate and its key, or neither (then one is issued by Updraft's CA)`);
    }
  }
  return errors;
}

/**
 * The configuration fit to print (`updraft config`): secret settings as "***" when set, and
 * the password of any URL (a database's) as "***".
 */
export function redactedConfig(config: UpdraftConfig): Record<string, unknown> {
  const out = JSON.parse(JSON.stringify(config)) as Record<string, unknown>;
  for (const s of SETTINGS) {
    const value = getPath(out, s.path);
    if (typeof value !== 'string' || value === '') continue;
    if (s.secret) setPath(out, s.path, '***');
    else if (s.type === 'url') setPath(out, s.path, redactUrl(value));
  }
  return out;
}

/** The settings table as Markdown (for docs/configuration.md). */
export function settingsMarkdown(): string {
  const rows = SETTINGS.map((s) => `| \`${s.path}\` | \`--${s.flag}\` | \`${s.env}\` | \`${String(s.default)}\` | ${s.doc} |`);
  return ['| setting | flag | environment | default | meaning |', '| --- | --- | --- | --- | --- |', ...rows].join('\n');
}
