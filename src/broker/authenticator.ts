/**
 * Who may connect to the broker, and as whom. The broker asks the authenticator at CONNECT
 * and keeps the answer (a `Sender`) for the life of the connection; topic ACLs
 * (`topic-acl.ts`) are decided from it.
 */
import { timingSafeEqual } from 'node:crypto';
import { isValidId } from '../protocol/topics.ts';
import type { Sender } from './message-bus.ts';

/** What a client presents at CONNECT. */
export interface ConnectCredentials {
  clientId: string;
  username?: string;
  password?: Buffer;
}

/** Decides identities at CONNECT; returns undefined to refuse the connection. */
export interface Authenticator {
  authenticate(credentials: ConnectCredentials): Promise<Sender | undefined>;
}

/** The username operator and service clients connect with (password: the operator token). */
export const OPERATOR_USERNAME = 'operator';

/** Constant-time comparison of a presented secret with the expected one. */
export function secretMatches(presented: Buffer | undefined, expected: string): boolean {
  if (!presented) return false;
  const want = Buffer.from(expected);
  return presented.length === want.length && timingSafeEqual(presented, want);
}

/**
 * The authenticator of the embedded default before device credentials exist: a client
 * whose id is a valid device id is that device (and is held to that device's topics);
 * `operator` with the operator token is the operator. A wrong operator token is refused.
 */
export class ClientIdAuthenticator implements Authenticator {
  private readonly operatorToken: string;

  constructor(deps: { operatorToken: string }) {
    this.operatorToken = deps.operatorToken;
  }

  async authenticate(c: ConnectCredentials): Promise<Sender | undefined> {
    if (c.username === OPERATOR_USERNAME) {
      return secretMatches(c.password, this.operatorToken) ? { kind: 'operator', id: OPERATOR_USERNAME } : undefined;
    }
    return isValidId(c.clientId) ? { kind: 'device', id: c.clientId } : undefined;
  }
}
