/**
 * Who may connect to the broker, and as whom. The broker asks the authenticator at CONNECT
 * and keeps the answer (a `Sender`) for the life of the connection; topic ACLs
 * (`topic-acl.ts`) are decided from it.
 */
import { timingSafeEqual } from 'node:crypto';
import type { Sender } from './message-bus.ts';

/** What a client presents at CONNECT. */
export interface ConnectCredentials {
  clientId: string;
  username?: string;
  password?: Buffer;
  /** Subject CN of the client certificate, when the connection is TLS and the certificate verified against Updraft's CA. */
  certificateCommonName?: string | undefined;
  /** When that certificate was issued (ms since the epoch): its notBefore, which the CA sets a few minutes early for clock skew, plus those minutes. */
  certificateIssuedAt?: number | undefined;
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
