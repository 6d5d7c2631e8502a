/**
 * Temporary download credentials (the pattern's second answer to "only the targeted device
 * gets the software", docs/design.md §5): a short-lived bearer token whose only right is reading
 * one artifact, for one device, until it expires. Stateless: the token carries its grant
 * and an HMAC-SHA256 over it, made with the URL key ring (`kid`), so any instance can check
 * it and key rotation works as for URLs.
 *
 * Form: `updr_dl_<base64url JSON grant>.<base64url HMAC>`.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { activeKey, type SigningKey } from '../artifacts/url-signer.ts';
import { UpdraftError } from '../errors.ts';

/** What a token grants. */
export interface TokenGrant {
  deviceId: string;
  name: string;
  version: string;
  sha256: string;
  /** Seconds since the epoch. */
  expiresAt: number;
}

const PREFIX = 'updr_dl_';

interface Payload {
  v: 1;
  kid: string;
  d: string;
  n: string;
  ver: string;
  h: string;
  exp: number;
  /** When it was issued (seconds); absent in tokens issued before it was kept. */
  iat?: number;
}

function mac(secret: Buffer, encodedPayload: string): string {
  // domain separation: a token MAC can never be mistaken for a URL signature
  return createHmac('sha256', secret).update(`updraft-download-token-v1\n${encodedPayload}`).digest('base64url');
}

/** Issues and checks download tokens with the URL key ring (`activeKey` signs, every key verifies). */
export class DownloadTokens {
  private readonly keys: SigningKey[];

  private readonly now: () => number;

  /** `keys` is shared with the URL signer: rotating the ring in place rotates both. */
  constructor(deps: { keys: SigningKey[]; now?: () => number }) {
    this.keys = deps.keys;
    this.now = deps.now ?? Date.now;
  }

  /** A token granting `grant`. */
  issue(grant: TokenGrant): string {
    const key = activeKey(this.keys, this.now());
    const payload: Payload = { v: 1, kid: key.kid, d: grant.deviceId, n: grant.name, ver: grant.version, h: grant.sha256, exp: grant.expiresAt, iat: Math.floor(this.now() / 1000) };
    const encoded = Buffer.from(JSON.stringify(payload)).toString('base64url');
    return `${PREFIX}${encoded}.${mac(key.secret, encoded)}`;
  }

  /**
   * Checks `token` for a download of `artifact` by `deviceId` (the `device` query parameter)
   * at `nowSeconds`. Returns the device id; throws FORBIDDEN with the reason.
   */
  verify(token: string, artifact: { name: string; version: string; sha256: string }, deviceId: string | null, nowSeconds: number): { deviceId: string; issuedAt?: number } {
    const m = new RegExp(`^${PREFIX}([A-Za-z0-9_-]+)\\.([A-Za-z0-9_-]+)$`).exec(token);
    if (!m) throw new UpdraftError('FORBIDDEN', 'download token is malformed');
    const [, encoded, sig] = m as unknown as [string, string, string];
    let p: Payload;
    try {
      p = JSON.parse(Buffer.from(encoded, 'base64url').toString('utf8')) as Payload;
    } catch {
      throw new UpdraftError('FORBIDDEN', 'download token is malformed');
    }
    const key = this.keys.find((k) => k.kid === p.kid);
    if (!key) throw new UpdraftError('FORBIDDEN', 'download token was signed with an unknown or retired key');
    const expected = Buffer.from(mac(key.secret, encoded));
    const given = Buffer.from(sig);
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) throw new UpdraftError('FORBIDDEN', 'download token signature does not match (tampered)');
    if (p.v !== 1 || typeof p.exp !== 'number') throw new UpdraftError('FORBIDDEN', 'download token is malformed');
    if (p.exp < nowSeconds) throw new UpdraftError('FORBIDDEN', 'download token has expired; ask for a new one (state/{id}/credentials/request)');
    if (!deviceId) throw new UpdraftError('FORBIDDEN', 'a download with a token must name the device (?device=<id>)');
    if (p.d !== deviceId) throw new UpdraftError('FORBIDDEN', 'download token was issued to another device');
    if (p.n !== artifact.name || p.ver !== artifact.version || p.h !== artifact.sha256) throw new UpdraftError('FORBIDDEN', 'download token was issued for another artifact');
    return { deviceId: p.d, ...(Number.isSafeInteger(p.iat) ? { issuedAt: p.iat } : {}) };
  }
}
