/**
 * Builds the configuration from defaults, an optional JSON file, environment variables and
 * CLI flags (later sources win), validating every setting and reporting every error at once.
 */
import { closeSync, openSync, readSync } from 'node:fs';
import { isIP } from 'node:net';
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

/** Where a value comes from: a file's numbers are JSON numbers, the environment's and flags' are text. */
type Origin = 'default' | 'file' | 'env' | 'flag';

/** What a value is, without the value: for a secret's errors. */
function kindOf(v: unknown): string {
  if (Array.isArray(v)) return 'an array';
  if (v === null) return 'null';
  if (typeof v === 'string') return v === '' ? 'an empty string' : 'a string';
  return typeof v === 'object' ? 'an object' : `a ${typeof v}`;
}

/**
 * A value as an error shows it: a URL through redactUrl (no password, whatever it holds), a
 * secret setting's value never (only what kind of value it is: webhook.secret given as 123456789
 * or ["..."] was printed whole).
 */
function shown(s: Setting, raw: unknown): string {
  if (s.secret) return `${kindOf(raw)} (not shown: it is a secret)`;
  // a URL given to a setting that takes none (--db-query-timeout postgres://u:pw@..., a
  // variable's name swapped) is hidden as a URL setting's is: it was quoted whole
  return typeof raw === 'string' && (s.type === 'url' || raw.includes('://')) ? `"${redactUrl(raw)}"` : JSON.stringify(raw);
}

/** A JSON number that is no safe integer, as an error shows it: 1e400 is read as Infinity, which JSON.stringify wrote as null. */
function numberShown(n: number): string {
  return Number.isFinite(n) ? String(n) : 'a number too large to be read';
}

function coerce(s: Setting, raw: unknown, origin: Origin, source: string, errors: string[]): string | number | undefined {
  const fail = (problem: string) => void errors.push(`${s.path} (${source}) ${problem}`);
  if (s.type === 'integer') {
    let n: number;
    if (typeof raw === 'number') n = raw;
    // a file's number is a JSON number: "port": "4444" is a slip worth naming, not a number
    else if (typeof raw === 'string' && origin === 'file') return fail(`must be an integer, written as a JSON number without quotes; the file holds the string ${shown(s, raw)}`);
    // decimal digits only: Number() took 0x1F90, 1e3, 8080.0, 0b11 and ' 5'; a minus sign
    // is read here and refused by the minimum where the setting allows no negative
    else if (typeof raw === 'string' && /^-?\d+$/.test(raw)) n = Number(raw);
    else return fail(`must be an integer written in decimal digits, got ${shown(s, raw)}`);
    if (!Number.isSafeInteger(n)) {
      // an integer too large (digits, or a JSON number such as 1e20 or 1e400) is out of range, not "no integer"
      if (typeof raw === 'number' && !Number.isInteger(n) && Number.isFinite(n)) return fail(`must be an integer, got ${shown(s, raw)}`);
      const got = typeof raw === 'string' ? raw : numberShown(n);
      return fail(n < 0 ? `must be at least ${s.min ?? -Number.MAX_SAFE_INTEGER}, got ${got}` : `must be at most ${s.max ?? Number.MAX_SAFE_INTEGER}, got ${got}`);
    }
    if (s.min !== undefined && n < s.min) return fail(`must be at least ${s.min}, got ${n}`);
    if (s.max !== undefined && n > s.max) return fail(`must be at most ${s.max}, got ${n}`);
    return n;
  }
  if (typeof raw !== 'string') return fail(`must be a string, got ${shown(s, raw)}`);
  if (s.nonEmpty && raw.trim() === '') return fail(`must not be empty: ${s.nonEmpty}`);
  const problem = raw !== '' ? s.check?.(raw) : undefined;
  // the check quotes the value: a URL pasted there is hidden as in shown()
  if (problem !== undefined) return fail(raw.includes('://') ? redactUrl(problem) : problem);
  if (s.type === 'url' && raw !== '') {
    // a base URL first: its own reasons (a port out of range, a query) say more than "not a URL"
    const problem = s.base ? baseUrlProblem(raw) : undefined;
    if (problem !== undefined) {
      return fail(`must be an absolute http:// or https:// URL (a host, an optional port from 1 to 65535 and path; no user info, query or fragment), but ${s.secret ? 'it is not (not shown: it is a secret)' : `${problem}: got ${shown(s, raw)}`}`);
    }
    let url: URL;
    try {
      url = new URL(raw);
    } catch {
      return fail(`must be a URL like ${s.schemes![0]}://..., got ${s.secret ? 'something else (not shown: it is a secret)' : shown(s, raw)}`);
    }
    const scheme = url.protocol.slice(0, -1);
    if (!s.schemes!.includes(scheme)) return fail(`must be a ${s.schemes!.join(' or ')} URL, got ${scheme}://`);
    if (s.noUserInfo && (url.username || url.password)) {
      return fail(`must hold no user info (user:password@): ${s.noUserInfo}; got ${s.secret ? 'a URL with user info (not shown: it is a secret)' : shown(s, raw)}`);
    }
  }
  if (s.type === 'enum' && !s.values!.includes(raw)) return fail(`must be one of ${s.values!.join(', ')}, got ${shown(s, raw)}`);
  return raw;
}

/**
 * Where a file that is no JSON goes wrong, and how, without its text: Node 20's JSON.parse
 * quotes the text around the fault (`Unexpected token 's', ..."secret": s3cr3t-hma"... is
 * not valid JSON`), a secret's first characters included. Node's own offset ("at position N",
 * in its other messages) is taken when it gives one; else this scan of the JSON grammar
 * (RFC 8259) finds it.
 */
function jsonSyntaxProblem(text: string, nodeMessage: string): string {
  const found = jsonSyntaxError(text);
  const nodeOffset = /at position (\d+)/.exec(nodeMessage)?.[1];
  const offset = nodeOffset !== undefined ? Number(nodeOffset) : found?.offset;
  if (offset === undefined) return 'is not valid JSON';
  const reason = found && found.offset === offset ? found.reason : 'a syntax error';
  const lines = text.slice(0, offset).split('\n');
  return `is not valid JSON: ${reason} at line ${lines.length}, column ${lines.at(-1)!.length + 1}`;
}

/** The offset of the first fault of `text` as JSON, and what it is, or undefined when it is JSON. */
export function jsonSyntaxError(text: string): { offset: number; reason: string } | undefined {
  return scanJson(text);
}

/**
 * The keys `text` (JSON) gives twice in one object, as dotted paths with the line of the
 * second: JSON.parse keeps the last silently, so a second `"mqtt": {...}` group (a file put
 * together from pieces) dropped every setting of the first, leaving their defaults in force.
 */
export function duplicateJsonKeys(text: string): { path: string; line: number }[] {
  const found: { path: string; line: number }[] = [];
  scanJson(text, (path, offset) => found.push({ path, line: text.slice(0, offset).split('\n').length }));
  return found;
}

/**
 * Reads `text` by the JSON grammar (RFC 8259): the first fault and its offset, or undefined;
 * `onDuplicate` hears each key given twice in one object (its dotted path, the offset of the
 * second). Without an offset (a text nested too deep for this recursion) it says nothing.
 */
function scanJson(text: string, onDuplicate?: (path: string, offset: number) => void): { offset: number; reason: string } | undefined {
  let i = 0;
  const fault = (reason: string, at = i): never => {
    throw Object.assign(new Error(reason), { offset: at });
  };
  const space = () => {
    while (i < text.length && ' \t\n\r'.includes(text[i]!)) i++;
  };
  const expect = (what: string) => fault(i >= text.length ? 'the file ends too soon' : what);
  const string = () => {
    i++;
    for (;;) {
      const c = text[i];
      // at the offsets V8 reports: the end, the escaped character, the first bad hex digit
      if (c === undefined) fault('a string is not closed');
      if (c === '"') return void i++;
      if (c === '\\') {
        const e = text[++i];
        if (e === 'u') {
          for (let k = 1; k <= 4; k++) if (!/[0-9a-fA-F]/.test(text[i + k] ?? '')) fault('a bad \\u escape in a string (four hex digits)', i + k);
          i += 5;
        } else if (e !== undefined && '"\\/bfnrt'.includes(e)) i++;
        else fault('a bad escape in a string');
      } else if (c! < ' ') fault('a control character in a string (write it escaped, as \\n or \\t)');
      else i++;
    }
  };
  const digits = (after: string) => {
    if (!/[0-9]/.test(text[i] ?? '')) fault(`a number with no digit after its ${after}`);
    while (/[0-9]/.test(text[i] ?? '')) i++;
  };
  const number = () => {
    if (text[i] === '-') i++;
    if (text[i] === '0') i++;
    else digits("'-'");
    if (text[i] === '.') {
      i++;
      digits("'.'");
    }
    if (text[i] === 'e' || text[i] === 'E') {
      i++;
      if (text[i] === '+' || text[i] === '-') i++;
      digits('exponent');
    }
  };
  const value = (at: string): void => {
    space();
    const c = text[i];
    if (c === '{' || c === '[') {
      const close = c === '{' ? '}' : ']';
      const keys = new Set<string>();
      i++;
      space();
      if (text[i] === close) return void i++;
      for (;;) {
        let inner = `${at}[]`;
        if (c === '{') {
          space();
          if (text[i] !== '"') expect('a property name in double quotes is expected');
          const start = i;
          string();
          if (onDuplicate) {
            const key = JSON.parse(text.slice(start, i)) as string;
            inner = at === '' ? key : `${at}.${key}`;
            if (keys.has(key)) onDuplicate(inner, start);
            keys.add(key);
          }
          space();
          if (text[i] !== ':') expect("':' is expected after a property name");
          i++;
        }
        value(inner);
        space();
        if (text[i] === ',') i++;
        else if (text[i] === close) return void i++;
        else expect(`',' or '${close}' is expected`);
      }
    }
    if (c === '"') return string();
    if (c === '-' || (c !== undefined && c >= '0' && c <= '9')) return number();
    for (const word of ['true', 'false', 'null']) if (text.startsWith(word, i)) return void (i += word.length);
    if (c === '\ufeff') fault('a byte order mark (save the file as UTF-8 without one)');
    expect('a value is expected (text is written in double quotes)');
  };
  try {
    value('');
    space();
    if (i < text.length) fault('more text after the JSON value');
    return undefined;
  } catch (err) {
    // a text nested too deep for this recursion: no offset to give
    const offset = (err as { offset?: number }).offset;
    return offset === undefined ? undefined : { offset, reason: (err as Error).message };
  }
}

/**
 * The most a configuration file may hold. Its settings take a few KB; a file read whole
 * without a bound (a log or an image named by mistake, /dev/zero, a 3 GB file) took minutes
 * and gigabytes of memory before failing with V8's own words, or never ended.
 */
export const MAX_CONFIG_FILE_BYTES = 1024 * 1024;

/** The text of the file `file`, read up to MAX_CONFIG_FILE_BYTES (a pipe too: `--config <(...)`); more is refused. */
function readConfigText(file: string): string {
  const fd = openSync(file, 'r');
  try {
    const buf = Buffer.alloc(MAX_CONFIG_FILE_BYTES + 1);
    let n = 0;
    while (n < buf.length) {
      const r = readSync(fd, buf, n, buf.length - n, null);
      if (r === 0) break;
      n += r;
    }
    if (n > MAX_CONFIG_FILE_BYTES) throw new Error(`it holds more than ${MAX_CONFIG_FILE_BYTES / 1024 / 1024} MiB, which no configuration needs (its settings take a few KB): name the JSON file of settings`);
    return buf.toString('utf8', 0, n);
  } finally {
    closeSync(fd);
  }
}

/** Loads and validates; throws one UpdraftError CONFIG (status 400) listing every problem, unknown keys of the file included. */
export function loadConfig(sources: ConfigSources = {}): UpdraftConfig {
  const errors: string[] = [];
  let fileValues: unknown = {};
  // `--config ''` named no file and was ignored without a word
  if (sources.file === '') errors.push('config file: the name given is empty: name a JSON file, or leave --config out');
  else if (sources.file !== undefined) {
    let text: string | undefined;
    try {
      text = readConfigText(sources.file);
    } catch (err) {
      errors.push(`config file ${sources.file}: ${(err as Error).message}`);
    }
    if (text !== undefined) {
      try {
        fileValues = JSON.parse(text);
        for (const d of duplicateJsonKeys(text)) {
          errors.push(`config file ${sources.file}: ${d.path} is given twice (again at line ${d.line}): only the second would be read, the first ignored; write it once`);
        }
        for (const e of fileShapeErrors(fileValues, SETTINGS)) errors.push(`config file ${sources.file}: ${e}`);
      } catch (err) {
        // never Node's message: it quotes the file's text, secrets included
        errors.push(`config file ${sources.file} ${jsonSyntaxProblem(text, (err as Error).message)}`);
      }
    }
  }
  const env = sources.env ?? {};
  const flags = sources.flags ?? {};
  const out: Record<string, unknown> = {};
  /** Where each setting's value came from, for errors about settings that depend on each other. */
  const from = new Map<string, string>();
  for (const s of SETTINGS) {
    let value = coerce(s, s.default, 'default', 'default', errors);
    from.set(s.path, 'default');
    const take = (raw: unknown, origin: Origin, source: string) => {
      const v = coerce(s, raw, origin, source, errors);
      if (v === undefined) return;
      value = v;
      from.set(s.path, source);
    };
    const fromFile = getPath(fileValues, s.path);
    if (fromFile !== undefined) take(fromFile, 'file', `file ${sources.file}`);
    // an empty variable (UPDRAFT_DATA_DIR= in a unit file or a script) is one not set, for
    // every setting, as the CLI reads UPDRAFT_TOKEN=: UPDRAFT_DATA_DIR= ran a server on the
    // working directory (under systemd, /); UPDRAFT_HTTP_PORT= was refused
    if (env[s.env] !== undefined && env[s.env] !== '') take(env[s.env], 'env', `env ${s.env}`);
    if (flags[s.flag] !== undefined) take(flags[s.flag], 'flag', `flag --${s.flag}`);
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
  // the PostgreSQL store's bounds, given for the embedded store, would be ignored without a word
  if (!partial.db) {
    const given = SETTINGS.filter((s) => s.path.startsWith('postgres.') && from.get(s.path) !== 'default');
    if (given.length > 0) errors.push(`${given.map((s) => `${s.path} (${from.get(s.path)})`).join(' and ')} ${given.length === 1 ? 'is' : 'are'} set but db is empty: the embedded SQLite store has no such bound; set db (--db postgres://...), or leave ${given.length === 1 ? 'it' : 'them'} out`);
  }
  // the embedded broker's limits and MQTTS files, given with an external broker, were ignored
  // without a word (limits the operator believed in force), or, the files, read for a listener
  // that never opens and failing the start when missing
  if (partial.mqtt?.url) {
    const given = EMBEDDED_BROKER_ONLY.map((p) => SETTINGS.find((x) => x.path === p)!).filter((x) => from.get(x.path) !== 'default' && getPath(partial, x.path) !== x.default);
    if (given.length > 0) {
      errors.push(`${given.map((x) => `${x.path} (${from.get(x.path)})`).join(' and ')} ${given.length === 1 ? 'is' : 'are'} set but mqtt.url (${from.get('mqtt.url')}) names an external broker, where the embedded broker's limits and MQTTS files are not used (that broker sets its own: docs/security.md); leave ${given.length === 1 ? 'it' : 'them'} out`);
    }
  }
  // the mirror: a share group given without an external broker was ignored without a word (the
  // embedded broker takes every device request itself; no $share subscription is made); its
  // default, or a value equal to it, is taken, as the embedded broker's defaults are above
  if (!partial.mqtt?.url) {
    const group = SETTINGS.find((x) => x.path === 'mqtt.shareGroup')!;
    if (from.get(group.path) !== 'default' && getPath(partial, group.path) !== group.default) {
      errors.push(`mqtt.shareGroup (${from.get(group.path)}) is set but mqtt.url is empty: the embedded broker takes every device request itself, with no shared subscription to name; set mqtt.url (--mqtt-url mqtt://...) for an external broker, or leave it out`);
    }
  }
  errors.push(...tlsFileErrors(partial, (p) => `${p} (${from.get(p)})`, (p) => from.get(p)!));
  errors.push(...sharedPortErrors(partial, (p) => `${p} (${from.get(p)})`));
  // a previous secret alone would sign with the replaced key only, in the header of the rotation
  if (partial.webhook?.previousSecret && !partial.webhook.secret) errors.push(`webhook.previousSecret (${from.get('webhook.previousSecret')}) is set without webhook.secret: it is the secret webhook.secret replaces during a rotation; set webhook.secret to the new one, or leave it out`);
  // a usage error (status 400): the CLI exits with code 2, as for a bad flag
  if (errors.length > 0) throw new UpdraftError('CONFIG', `invalid configuration: ${errors.join('; ')}`, { status: 400 });
  const config = out as unknown as UpdraftConfig;
  return config;
}

/** Settings of the embedded broker that would do nothing with an external one (mqtt.url); its host and ports are left out, as port 0 or -1 given with it is common and harmless. */
const EMBEDDED_BROKER_ONLY = ['mqtt.tlsCert', 'mqtt.tlsKey', 'mqtt.maxConnections', 'mqtt.maxConnectRate', 'mqtt.maxSubscriptions'];

/**
 * A listener's host in one spelling: an IPv6 address as the URL parser writes it (`0::0` and
 * `::0:0` are `::`), an IPv4-mapped one (`::ffff:127.0.0.1`, which the kernel serves as IPv4)
 * as its IPv4 address; others as given. Compared as written, such spellings passed the check
 * and clashed at the listen (second review).
 */
function canonicalHost(host: string): string {
  if (isIP(host) !== 6) return host;
  const written = new URL(`http://[${host}]`).hostname.slice(1, -1);
  const mapped = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(written);
  if (!mapped) return written;
  const [hi, lo] = [parseInt(mapped[1]!, 16), parseInt(mapped[2]!, 16)];
  return `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`;
}

/**
 * Two listeners' hosts that cannot both listen on one port: the same host, either one IPv6's
 * any address `::` (Node listens on it dual-stack, holding the port on IPv4 too), or IPv4's
 * `0.0.0.0` beside an IPv4 address. `0.0.0.0` beside an IPv6 address (`::1`) listens (review:
 * such a configuration was refused for a while); beside a host name it is left to the
 * listen, which says so if the name is an IPv4 one.
 */
function hostsOverlap(hostA: string, hostB: string): boolean {
  const [a, b] = [canonicalHost(hostA), canonicalHost(hostB)];
  if (a === b || a === '::' || b === '::') return true;
  if (a === '0.0.0.0') return isIP(b) === 4;
  if (b === '0.0.0.0') return isIP(a) === 4;
  return false;
}

/**
 * Two of the server's listeners given one port on interfaces that overlap (the same, or one of
 * them all): the second could not listen, and the start failed with exit code 1 and 'MQTT
 * port 8883 on 0.0.0.0 is already in use; stop what uses it', naming a conflict with nothing
 * the operator could find (`--http-port 8883` beside the MQTTS listener's default 8883).
 * Port 0 picks a free port for each; with mqtt.url the embedded broker does not listen.
 */
function sharedPortErrors(c: UpdraftConfig, named: (path: string) => string): string[] {
  if (!c.http || !c.mqtt) return [];
  const listeners = [{ port: 'http.port', host: c.http.host, n: c.http.port }];
  if (!c.mqtt.url) {
    listeners.push({ port: 'mqtt.port', host: c.mqtt.host, n: c.mqtt.port });
    if (c.mqtt.tlsPort >= 0) listeners.push({ port: 'mqtt.tlsPort', host: c.mqtt.host, n: c.mqtt.tlsPort });
  }
  const errors: string[] = [];
  for (let i = 0; i < listeners.length; i++) {
    for (let j = i + 1; j < listeners.length; j++) {
      const [a, b] = [listeners[i]!, listeners[j]!];
      if (a.n <= 0 || a.n !== b.n) continue;
      if (!hostsOverlap(a.host, b.host)) continue;
      errors.push(`${named(a.port)} and ${named(b.port)} are both ${a.n}${a.host === b.host ? ` on ${a.host}` : ` (on ${a.host} and ${b.host})`}: one port cannot take two listeners; give each its own (0 picks a free one)`);
    }
  }
  return errors;
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
