/**
 * What the simulated devices trust: the server's public key, as a real device is provisioned
 * with it (`updraft device register --save` writes the root's key when the server has a
 * certificate from one, else the signing key, and the daemon prefers the root), so that every
 * command's manifest and artifact are verified on the simulated device as on a real one, and
 * the server records `reported.agent.trust` as `root` or `signing-key`, not `unsigned`.
 *
 * The key is parsed once per simulator process and the one KeyObject is shared by all its
 * agents (UpdateAgentOptions takes a KeyObject as it is): a PEM text would be parsed again by
 * every agent's option check and start, and a cycling fleet starts an agent per visit.
 */
import type { KeyObject } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import type { ApiClient } from '../cli/api-client.ts';
import { UpdraftError } from '../errors.ts';
import { keyIdOf, parsePublicKey } from '../signing/signing-key.ts';

/** The UpdateAgent options the simulated devices are given: a public key (shared), or the explicit opt-out. */
export type SimTrust = { rootPublicKey: KeyObject } | { signingPublicKey: KeyObject } | { allowUnsigned: true };

/** A public key the devices are provisioned with, as text: what `updraft sim --processes` hands its children (in a file). */
export interface TrustAnchor {
  /** `root`: the offline root's key (`--root-key`); `signing`: the server's signing key (`--signing-key`). */
  kind: 'root' | 'signing';
  /** SPKI PEM. */
  pem: string;
}

/** The `updraft sim` (and `updraft agent`) option that gives an anchor of this kind. */
export function trustFlag(kind: TrustAnchor['kind']): '--root-key' | '--signing-key' {
  return kind === 'root' ? '--root-key' : '--signing-key';
}

/**
 * What the server's `GET /api/v1/keys` says the devices trust: its root when it has a
 * certificate from one, else its signing key. `api` is made here: a missing operator token
 * fails as the request does, in the same one line.
 */
export async function fetchTrustAnchor(api: () => ApiClient): Promise<TrustAnchor> {
  let keys: { signing?: { publicKey?: unknown }; root?: { publicKey?: unknown } | null };
  let baseUrl = 'the server';
  try {
    const client = api();
    baseUrl = client.baseUrl;
    keys = await client.call('GET', '/api/v1/keys');
  } catch (err) {
    const e = err instanceof UpdraftError ? err : undefined;
    throw new UpdraftError(
      e?.code ?? 'UNAVAILABLE',
      `the simulated devices verify updates with the server's public key, and asking ${baseUrl} for it (GET /api/v1/keys) failed: ${(err as Error).message}. Give --server and --token (or --data-dir), or the key with --root-key or --signing-key <file> (updraft keys export-public), or --insecure-allow-unsigned for devices that verify nothing`,
      { cause: err, ...(e ? { status: e.status } : {}) },
    );
  }
  const root = keys.root?.publicKey;
  const signing = keys.signing?.publicKey;
  const anchor: TrustAnchor | undefined = typeof root === 'string' ? { kind: 'root', pem: root } : typeof signing === 'string' ? { kind: 'signing', pem: signing } : undefined;
  if (!anchor) throw new UpdraftError('CONFIG', `${baseUrl} names no software signing key (GET /api/v1/keys): give the key with --root-key/--signing-key <file>, or --insecure-allow-unsigned for devices that verify nothing`);
  checkAnchor(anchor, `the ${anchor.kind === 'root' ? 'root' : 'signing'} key of ${baseUrl}`);
  return anchor;
}

/** The anchor in the file of `--root-key` or `--signing-key`; BAD_REQUEST naming the option and the file. */
export async function readTrustAnchor(kind: TrustAnchor['kind'], file: string): Promise<TrustAnchor> {
  const flag = trustFlag(kind);
  const pem = await readFile(file, 'utf8').catch((err: Error) => {
    throw new UpdraftError('BAD_REQUEST', `cannot read ${flag} ${file}: ${err.message}`);
  });
  const anchor = { kind, pem };
  checkAnchor(anchor, `${flag} ${file}`);
  return anchor;
}

/** The agents' option for `anchor`: its key parsed once, for every agent of the process. */
export function simTrustOf(anchor: TrustAnchor): SimTrust {
  const key = parsePublicKey(anchor.pem);
  return anchor.kind === 'root' ? { rootPublicKey: key } : { signingPublicKey: key };
}

/** How the devices check software, as they report it (`reported.agent.trust` and its key id). */
export function describeTrust(trust: SimTrust): string {
  if ('rootPublicKey' in trust) return `root ${keyIdOf(trust.rootPublicKey)}`;
  if ('signingPublicKey' in trust) return `signing-key ${keyIdOf(trust.signingPublicKey)}`;
  return 'unsigned';
}

function checkAnchor(anchor: TrustAnchor, what: string): void {
  try {
    parsePublicKey(anchor.pem);
  } catch (err) {
    throw new UpdraftError('BAD_REQUEST', `${what} is not an Ed25519 public key in PEM: ${(err as Error).message}`);
  }
}
