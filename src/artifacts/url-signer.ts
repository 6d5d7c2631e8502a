/**
 * Pre-signed download URLs (the pattern's first answer to "only the targeted device gets the
 * software", docs/design.md §5): an HMAC-SHA256 over device, artifact (name, version and SHA-256),
 * expiry and optionally the client IP (verified when a URL carries one; issued only with
 * `downloads.ipBinding mqtt`, the address of the device's MQTT connection: in general the
 * server cannot know which address a device downloads from, docs/security.md). Keys carry
 * an id (`kid`) so they can rotate: new URLs are signed with the newest active key while URLs
 * signed with an older key in the ring stay valid until they expire; a key may be staged to
 * sign only from a given time.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { UpdraftError } from '../errors.ts';
import { rememberLru } from '../util/lru.ts';

/**
 * URLs signed lately, kept to be given again for the same grant: a device in the middle of
 * an update receives its command again after each progress report (the shadow contract),
 * with the same expiry while the command's manifest is reused (`server/update-commands.ts`),
 * and signing it anew (an HMAC and a URL built) took 10 µs of a busy server each time. The
 * active key's id is part of the grant's key, so a rotation signs anew at once.
 */
const SIGNED_KEPT = 10_000;

/** One HMAC key. */
export interface SigningKey {
  kid: string;
  secret: Buffer;
  /**
   * Milliseconds since the epoch from which it signs (absent: at once). Until then it only
   * verifies: a key staged on every instance before any signs with it, so that a URL signed
   * by one instance is never refused by another that has not the key yet.
   */
  activeFrom?: number;
}

/** The key that signs at `now`: the newest (first) whose activation has come. */
export function activeKey(keys: readonly SigningKey[], now = Date.now()): SigningKey {
  for (const k of keys) if (k.activeFrom === undefined || k.activeFrom <= now) return k;
  // every key staged for later (a ring written by hand): the oldest signs meanwhile
  const last = keys[keys.length - 1];
  if (!last) throw new UpdraftError('CONFIG', 'the URL key ring is empty');
  return last;
}

/** What a URL grants: one device, one artifact, until `expiresAt`, optionally from one IP. */
export interface UrlGrant {
  deviceId: string;
  name: string;
  version: string;
  sha256: string;
  /** Seconds since the epoch. */
  expiresAt: number;
  ip?: string;
}

/** Signs and verifies download URLs. */
export class UrlSigner {
  private readonly keys: SigningKey[];
  private readonly baseUrl: string;
  private readonly signed = new Map<string, string>();

  private readonly now: () => number;

  /** `activeKey` signs; every key verifies. `baseUrl` is how devices reach the HTTP server. */
  constructor(deps: { keys: SigningKey[]; baseUrl: string; now?: () => number }) {
    if (deps.keys.length === 0) throw new UpdraftError('CONFIG', 'the URL signer needs at least one key');
    this.keys = deps.keys;
    this.baseUrl = deps.baseUrl.replace(/\/+$/, '');
    this.now = deps.now ?? Date.now;
  }

  /** The path of an artifact's download endpoint. */
  static path(name: string, version: string): string {
    return `/v1/download/${encodeURIComponent(name)}/${encodeURIComponent(version)}`;
  }

  /** A URL granting `grant`. */
  sign(grant: UrlGrant): string {
    const now = this.now();
    const key = activeKey(this.keys, now);
    // when it was issued, signed: a URL of a device deleted since is refused to the device
    // registered again under its id (the download route compares it with the registration)
    const issuedAt = Math.floor(now / 1000);
    const msg = message(grant, issuedAt);
    const id = `${key.kid}\n${msg}`;
    const known = this.signed.get(id);
    if (known) return known;
    const q = new URLSearchParams({ device: grant.deviceId, exp: String(grant.expiresAt), iat: String(issuedAt), kid: key.kid });
    if (grant.ip) q.set('ip', grant.ip);
    q.set('sig', mac(key.secret, msg));
    const url = `${this.baseUrl}${UrlSigner.path(grant.name, grant.version)}?${q.toString()}`;
    rememberLru(this.signed, id, url, SIGNED_KEPT);
    return url;
  }

  /**
   * Checks a request's query against the artifact it asks for. Returns the device id and,
   * when the URL says (`iat`, signed), when it was issued, in seconds;
   * throws FORBIDDEN with the reason (expired, tampered, unknown key, wrong IP).
   * `clientIp` is the address, or a function reading it: read only for an IP-bound URL.
   */
  verify(query: URLSearchParams, artifact: { name: string; version: string; sha256: string }, clientIp: string | (() => string), nowSeconds: number): { deviceId: string; issuedAt?: number } {
    requireSignedQuery(query);
    const deviceId = query.get('device')!;
    const exp = Number(query.get('exp'));
    const kid = query.get('kid')!;
    const sig = query.get('sig')!;
    const key = this.keys.find((k) => k.kid === kid);
    if (!key) throw new UpdraftError('FORBIDDEN', 'download URL was signed with an unknown or retired key');
    const ip = query.get('ip') ?? undefined;
    const iat = query.get('iat');
    const issuedAt = iat === null ? undefined : Number(iat);
    if (issuedAt !== undefined && !Number.isSafeInteger(issuedAt)) throw new UpdraftError('FORBIDDEN', 'download URL signature does not match (tampered, or for another device or artifact)');
    const expected = Buffer.from(mac(key.secret, message({ deviceId, ...artifact, expiresAt: exp, ...(ip ? { ip } : {}) }, issuedAt)));
    const given = Buffer.from(sig);
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
      throw new UpdraftError('FORBIDDEN', 'download URL signature does not match (tampered, or for another device or artifact)');
    }
    if (exp < nowSeconds) throw new UpdraftError('FORBIDDEN', 'download URL has expired; ask for a fresh one (publish on state/{id}/get)');
    if (ip && normalizeIp(ip) !== normalizeIp(typeof clientIp === 'string' ? clientIp : clientIp())) {
      throw new UpdraftError('FORBIDDEN', 'download URL is bound to another IP address');
    }
    return { deviceId, ...(issuedAt !== undefined ? { issuedAt } : {}) };
  }
}

/**
 * What the MAC covers; newline-separated: no field can contain a newline (ids and versions
 * are validated). v2 adds when the URL was issued; a v1 URL (issued before) has no `iat`.
 */
function message(g: UrlGrant, issuedAt?: number): string {
  const v1 = ['v1', g.deviceId, g.name, g.version, g.sha256, String(g.expiresAt), g.ip ?? ''];
  return issuedAt === undefined ? v1.join('\n') : ['v2', ...v1.slice(1), String(issuedAt)].join('\n');
}

function mac(secret: Buffer, msg: string): string {
  return createHmac('sha256', secret).update(msg).digest('base64url');
}

/** `::ffff:127.0.0.1` and `127.0.0.1` are the same client. */
function normalizeIp(ip: string): string {
  return ip.startsWith('::ffff:') ? ip.slice(7) : ip;
}

/**
 * Refuses a download URL that carries no signature at all. Checked before the artifact is
 * looked up: an unsigned request learns nothing, not even whether the artifact exists.
 */
export function requireSignedQuery(query: URLSearchParams): void {
  if (!query.get('device') || !query.get('kid') || !query.get('sig') || !Number.isSafeInteger(Number(query.get('exp')))) {
    throw new UpdraftError('FORBIDDEN', 'download URL is not signed: device, exp, kid and sig are required');
  }
}
