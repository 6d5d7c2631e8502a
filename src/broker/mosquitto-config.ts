/**
 * Mosquitto 2 configuration for the production topology (DESIGN.md §6, §7), generated from
 * the device registry: `mosquitto.conf` (a device listener and a service listener for the
 * Updraft instances), `passwd` (Mosquitto's own PBKDF2-SHA512 `$7$` format, what
 * `mosquitto_passwd` writes) and `acl` (each device limited to its own `state/<id>/...`
 * topics through `%u` patterns, the same rules as `topic-acl.ts` enforces in the embedded
 * broker).
 *
 * On the device listener `use_username_as_clientid` makes the client id the user name, so
 * a device can neither pick another device's client id nor take over its session. The
 * Updraft instances connect on the service listener, where every instance keeps its own
 * client id (they all use the user `operator`).
 */
import { pbkdf2, pbkdf2Sync, randomBytes } from 'node:crypto';
import { promisify } from 'node:util';
import { OPERATOR_USERNAME } from '../broker/authenticator.ts';
import { UpdraftError } from '../errors.ts';
import { ID_RULE, isValidId } from '../protocol/topics.ts';

/** Mosquitto 2's default PBKDF2 iterations for `$7$` hashes. */
const PBKDF2_ITERATIONS = 101;

const pbkdf2Async = promisify(pbkdf2);

/** One line of a Mosquitto password file, as `mosquitto_passwd -b` writes it. */
export function mosquittoPasswordLine(username: string, password: string, salt: Buffer = randomBytes(12)): string {
  return passwordLine(username, formatHash(salt, pbkdf2Sync(password, salt, PBKDF2_ITERATIONS, 64, 'sha512')));
}

/**
 * A password in Mosquitto's `$7$` format, computed on the thread pool: the registry keeps
 * it beside the SHA-256 of each new secret, so the broker's password file can be generated
 * later without knowing the secret.
 */
export async function mosquittoPasswordHash(password: string, salt: Buffer = randomBytes(12)): Promise<string> {
  return formatHash(salt, await pbkdf2Async(password, salt, PBKDF2_ITERATIONS, 64, 'sha512'));
}

function formatHash(salt: Buffer, hash: Buffer): string {
  return `$7$${PBKDF2_ITERATIONS}$${salt.toString('base64')}$${hash.toString('base64')}`;
}

/**
 * Why a device id holding ':' is refused with Mosquitto, and what to do: the one wording of
 * every such refusal (the registration's, the generator's, `--watch`'s), after the id or ids.
 */
export const COLON_ID_REASON = "Mosquitto's password file separates user name and hash with ':', so a device whose id holds ':' cannot log in to Mosquitto with a secret; register devices under ids without ':'";

/**
 * Why Mosquitto cannot take `deviceId` as a user name, or undefined. Its password file
 * separates the name from the hash at the first ':' (`user:hash`, mosquitto_passwd), so a
 * device id holding one (the registry allows `_ . : -`, as AWS thing names do) cannot log in
 * with a secret there. Such a device is left out of the file, named; it never stops the file
 * being written for the others (one `gw:1` made every regeneration fail, so revocations
 * stopped reaching Mosquitto).
 */
export function mosquittoUserNameDefect(deviceId: string): string | undefined {
  if (deviceId === OPERATOR_USERNAME) return `device id "${deviceId}" is the operators' and Updraft instances' MQTT user name (reserved since 2026-12-04): such a device cannot log in to Mosquitto, and a line of its own would stand beside the operator's; delete it and register the device under another id`;
  return deviceId.includes(':') ? `device id "${deviceId}" holds ':': ${COLON_ID_REASON}` : undefined;
}

function passwordLine(username: string, hash: string): string {
  if (/[:\n]/.test(username)) throw new Error(`a Mosquitto user name cannot contain ':' or a newline: ${username}`);
  if (!/^\$7\$\d+\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+$/.test(hash)) throw new Error(`the stored broker hash of ${username} is not a Mosquitto $7$ hash`);
  return `${username}:${hash}`;
}

/**
 * The ACL file: the operator (Updraft instances, tools) on `state/#`, each device on its own
 * topics only, and `revoked` devices on none. A device logged in with a client certificate
 * (`--updraft-ca`: `use_identity_as_username`, the password file not used there) is admitted
 * by the TLS handshake alone, so leaving a revoked device out of the password file did not
 * keep it out: it still read its own topics (its commands, their signed download URLs) and
 * wrote its requests, which Updraft refused one by one. Mosquitto checks a user's denials
 * before any pattern, at each publish and each delivery, and rereads this file on SIGHUP: the
 * revoked device's connection stays open but carries nothing, including one made before it.
 */
export function mosquittoAcl(revoked: Iterable<string> = []): string {
  const ops = ['update', 'get', 'delete'];
  // never the operator's name: a device registered as `operator` before that id was reserved
  // (2026-12-04), revoked, would deny Updraft's instances every topic (Mosquitto merges a
  // user's blocks and checks denials first: review, 2026-12-06)
  const denied = [...new Set(revoked)].filter((id) => id !== OPERATOR_USERNAME && isValidId(id) && !/\s/.test(id)).sort();
  return [
    '# generated by `updraft broker mosquitto-config`: regenerate rather than edit',
    '# Updraft instances and operator tools: every shadow topic, requests and answers',
    `user ${OPERATOR_USERNAME}`,
    'topic readwrite state/#',
    '# events between Updraft instances (cluster/event-relay.ts)',
    'topic readwrite updraft/#',
    '# the AWS IoT shadow and jobs families (issue 9, docs/aws-compatibility.md)',
    'topic readwrite $aws/things/#',
    '',
    '# every device (%u = its user name = its device id): publish its own requests,',
    '# subscribe to and receive its own answers, nothing else',
    ...ops.map((op) => `pattern write state/%u/${op}`),
    ...ops.map((op) => `pattern write state/%u/shadow/+/${op}`),
    'pattern write state/%u/credentials/request',
    'pattern write state/%u/certificate/renew',
    'pattern write state/%u/job-log',
    '# its presence: the retained online message and the Will (protocol/presence.ts)',
    'pattern write state/%u/presence',
    'pattern read state/%u/#',
    '# the same for its own thing in the AWS IoT families: requests only, answers to read',
    ...ops.map((op) => `pattern write $aws/things/%u/shadow/${op}`),
    ...ops.map((op) => `pattern write $aws/things/%u/shadow/name/+/${op}`),
    ...['jobs/get', 'jobs/start-next', 'jobs/+/get', 'jobs/+/update'].map((t) => `pattern write $aws/things/%u/${t}`),
    'pattern read $aws/things/%u/shadow/#',
    'pattern read $aws/things/%u/jobs/#',
    '',
    ...(denied.length > 0
      ? [
          '# revoked devices (updraft device revoke): no topic at all, also when logged in with a client',
          "# certificate, where the password file is not used ('#' does not match the $aws/ topics)",
          ...denied.flatMap((id) => [`user ${id}`, 'topic deny #', 'topic deny $aws/#']),
          '',
        ]
      : []),
  ].join('\n');
}

/** Where the generated broker listens, and its TLS files. */
export interface MosquittoListeners {
  /** Directory the config is written to (absolute): passwd and acl are referenced from there. */
  dir: string;
  deviceHost: string;
  devicePort: number;
  /** The listener of the Updraft instances: bind it to a private interface. */
  serviceHost: string;
  servicePort: number;
  /**
   * TLS for the device listener (certfile, keyfile, optional cafile). A cafile alone asks
   * devices for no client certificate: they log in with their password, as without it.
   * `certificateLogins` (with a cafile) makes the listener require a certificate of those CAs
   * and take its CN as the user name: the password file is not used there, so a revoked device
   * (left out of it) still gets in with its certificate (Updraft refuses its requests).
   * `crlfile` (with certificate logins): the CRL of deleted devices' certificates
   * (pki/revocation-list.ts); OpenSSL then wants a CRL of every CA in the cafile.
   */
  tls?: { certfile: string; keyfile: string; cafile?: string; certificateLogins?: boolean; crlfile?: string };
  /** Largest MQTT packet Mosquitto takes (`max_packet_size`); 64 KiB by default, as the embedded broker. */
  maxPacketBytes?: number;
}

/** mosquitto.conf for the two listeners. */
export function mosquittoConf(l: MosquittoListeners): string {
  const common = [`allow_anonymous false`, `password_file ${l.dir}/passwd`, `acl_file ${l.dir}/acl`];
  // a cafile alone is what --tls-ca always wrote: Mosquitto 2.0 asks for no client certificate
  // then, and devices log in with their passwords (test/broker/mosquitto-tls-ca.test.ts).
  // Certificate logins (--updraft-ca) are asked for explicitly: the CN is the user name, as
  // the embedded broker takes it, so the ACL's %u patterns hold, and the password file is not
  // used on this listener (mosquitto.conf(5), use_identity_as_username): a revoked device gets
  // in, and Updraft refuses its requests (registry/revoked-devices.ts)
  const certificateLogins = l.tls?.cafile && l.tls.certificateLogins ? ['require_certificate true', 'use_identity_as_username true', ...(l.tls.crlfile ? [`crlfile ${l.tls.crlfile}`] : [])] : [];
  const clientCa = l.tls?.cafile ? [`cafile ${l.tls.cafile}`, ...certificateLogins] : [];
  const tls = l.tls ? [`certfile ${l.tls.certfile}`, `keyfile ${l.tls.keyfile}`, ...clientCa, 'tls_version tlsv1.2'] : [];
  return [
    '# generated by `updraft broker mosquitto-config`: regenerate rather than edit',
    '# each listener has its own authentication settings (below: the same files for both)',
    'per_listener_settings true',
    '# a larger packet closes its connection: no device makes the broker buffer megabytes (above any',
    '# request Updraft answers: raise it with the shadow limit, updraft broker mosquitto-config --max-packet-bytes)',
    `max_packet_size ${l.maxPacketBytes ?? 65536}`,
    '# shared subscriptions ($share/updraft/...) split device requests between Updraft instances',
    '',
    '# devices',
    `listener ${l.devicePort} ${l.deviceHost}`,
    ...common,
    '# the client id is the user name: no device can use, or take over, another one\'s session',
    'use_username_as_clientid true',
    ...tls,
    '',
    '# Updraft instances (user operator); keep this listener on a private network',
    `listener ${l.servicePort} ${l.serviceHost}`,
    ...common,
    '',
  ].join('\n');
}

/** A device as the registry lists it. */
export interface RegisteredDevice {
  deviceId: string;
  revoked: boolean;
  /** The secret's `$7$` hash the registry kept at registration or rotation, if any. */
  brokerHash?: string;
}

/**
 * The password file: the operator, then every registered, non-revoked device, with the
 * hash the registry kept or, for devices registered before it kept one, a secret given.
 */
export function mosquittoPasswd(input: { operatorToken: string; devices: RegisteredDevice[]; secrets: Map<string, string> }): { text: string; included: string[]; missing: string[]; revoked: string[]; unnamable: string[] } {
  const lines = [mosquittoPasswordLine(OPERATOR_USERNAME, input.operatorToken)];
  const included: string[] = [];
  const missing: string[] = [];
  const revoked: string[] = [];
  const unnamable: string[] = [];
  const secretLine = (id: string) => {
    const secret = input.secrets.get(id);
    return secret === undefined ? undefined : mosquittoPasswordLine(id, secret);
  };
  for (const d of input.devices) {
    const line = devicePasswdLine(d, secretLine);
    if (line === 'revoked') revoked.push(d.deviceId);
    else if (line === 'missing') missing.push(d.deviceId);
    else if (line === 'unnamable') unnamable.push(d.deviceId);
    else {
      lines.push(line);
      included.push(d.deviceId);
    }
  }
  return { text: lines.join('\n') + '\n', included, missing, revoked, unnamable };
}

/** A device's line of the password file (a secret given wins over the kept hash), or why it has none. */
function devicePasswdLine(d: RegisteredDevice, secretLine: (deviceId: string) => string | undefined): string | 'revoked' | 'missing' | 'unnamable' {
  if (d.revoked) return 'revoked';
  if (mosquittoUserNameDefect(d.deviceId) !== undefined) return 'unnamable';
  const fromSecret = secretLine(d.deviceId);
  if (fromSecret !== undefined) return fromSecret;
  return d.brokerHash ? passwordLine(d.deviceId, d.brokerHash) : 'missing';
}

/**
 * The password file kept up to date device by device (`mosquitto-config --watch`). Lines
 * made from a given secret, and the operator's, are salted once for the book's life, so the
 * text changes only when a device's admission does, and Mosquitto is reloaded only then.
 */
export class MosquittoPasswdBook {
  private readonly operatorLine: string;
  private readonly secrets: Map<string, string>;
  private readonly secretLines = new Map<string, string>();
  /** Admitted devices and their lines. */
  private readonly lines = new Map<string, string>();
  private readonly missingIds = new Set<string>();
  private readonly unnamableIds = new Set<string>();
  private readonly revokedIds = new Set<string>();

  constructor(operatorToken: string, secrets: Map<string, string>) {
    this.operatorLine = mosquittoPasswordLine(OPERATOR_USERNAME, operatorToken);
    this.secrets = secrets;
  }

  /** Takes in a device as the registry has it now. */
  set(d: RegisteredDevice): void {
    const line = devicePasswdLine(d, (id) => this.secretLine(id));
    if (line === 'missing') this.missingIds.add(d.deviceId);
    else this.missingIds.delete(d.deviceId);
    if (line === 'unnamable') this.unnamableIds.add(d.deviceId);
    else this.unnamableIds.delete(d.deviceId); // revoked since: no longer one to name
    if (line === 'revoked') this.revokedIds.add(d.deviceId);
    else this.revokedIds.delete(d.deviceId);
    if (line === 'revoked' || line === 'missing' || line === 'unnamable') this.lines.delete(d.deviceId);
    else this.lines.set(d.deviceId, line);
  }

  /** A device no longer registered. */
  remove(deviceId: string): void {
    this.lines.delete(deviceId);
    this.missingIds.delete(deviceId);
    this.unnamableIds.delete(deviceId);
    this.revokedIds.delete(deviceId);
  }

  /** Replaces everything with a full listing of the registry. */
  replaceAll(devices: RegisteredDevice[]): void {
    this.lines.clear();
    this.missingIds.clear();
    this.unnamableIds.clear();
    this.revokedIds.clear();
    for (const d of devices) this.set(d);
  }

  /** Revoked devices: denied every topic in the ACL file (`mosquittoAcl`). */
  get revoked(): string[] {
    return [...this.revokedIds];
  }

  /** Devices whose id Mosquitto cannot take as a user name (`mosquittoUserNameDefect`): not admitted. */
  get unnamable(): string[] {
    return [...this.unnamableIds];
  }

  /** Devices admitted. */
  get admitted(): number {
    return this.lines.size;
  }

  /** Devices registered with neither a kept hash nor a given secret (not admitted). */
  get missing(): string[] {
    return [...this.missingIds];
  }

  text(): string {
    return [this.operatorLine, ...this.lines.values()].join('\n') + '\n';
  }

  private secretLine(deviceId: string): string | undefined {
    const secret = this.secrets.get(deviceId);
    if (secret === undefined) return undefined;
    let line = this.secretLines.get(deviceId);
    if (line === undefined) {
      line = mosquittoPasswordLine(deviceId, secret);
      this.secretLines.set(deviceId, line);
    }
    return line;
  }
}

/** Problems of a secrets file named before the rest are left unsaid (the message is one line). */
const MAX_SECRET_ERRORS = 5;

/**
 * Parses a secrets file: one `deviceId secret` (or `deviceId:secret`) per line; blank lines
 * and `#` comments are skipped. Any other line is refused, by line number, with every
 * problem at once: a skipped line was a device left out of the password file without a word.
 * The messages never show a secret. `name` says which file (`--secrets devices.txt`).
 */
export function parseSecrets(text: string, name = 'secrets file'): Map<string, string> {
  const out = new Map<string, string>();
  const firstLine = new Map<string, number>();
  const errors: string[] = [];
  text.split('\n').forEach((raw, i) => {
    const n = i + 1;
    const line = raw.trim();
    if (!line || line.startsWith('#')) return;
    const fields = line.split(/\s+/);
    let id: string;
    let secret: string;
    if (fields.length === 2) {
      // `deviceId: secret` too; a device id may hold a colon, so only a trailing one is a separator
      id = fields[0]!.endsWith(':') ? fields[0]!.slice(0, -1) : fields[0]!;
      secret = fields[1]!;
    } else if (fields.length === 1 && line.includes(':')) {
      id = line.slice(0, line.indexOf(':'));
      secret = line.slice(line.indexOf(':') + 1);
    } else {
      errors.push(`line ${n}: expected "deviceId secret" or "deviceId:secret", got ${fields.length} ${fields.length === 1 ? 'field' : 'fields'}`);
      return;
    }
    if (!isValidId(id)) errors.push(`line ${n}: "${id.slice(0, 140)}" is not a device id (${ID_RULE})`);
    else if (secret === '') errors.push(`line ${n}: no secret for ${id}`);
    else if (firstLine.has(id)) errors.push(`line ${n}: ${id} is listed again (first on line ${firstLine.get(id)})`);
    else {
      firstLine.set(id, n);
      out.set(id, secret);
    }
  });
  if (errors.length > 0) {
    const more = errors.length > MAX_SECRET_ERRORS ? `; and ${errors.length - MAX_SECRET_ERRORS} more` : '';
    throw new UpdraftError('BAD_REQUEST', `${name}: ${errors.slice(0, MAX_SECRET_ERRORS).join('; ')}${more}`);
  }
  return out;
}
