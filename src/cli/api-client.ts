/**
 * The CLI's client of the operator REST API. Finds the server (`--server`, UPDRAFT_SERVER,
 * default http://127.0.0.1:8080) and the token (`--token`, UPDRAFT_TOKEN, or the token file
 * the server wrote into its data directory).
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { UpdraftError } from '../errors.ts';
import { operatorTokenPath } from '../server/operator-token.ts';

/** Connection options shared by every API command. */
export interface ApiOptions {
  server?: string;
  token?: string;
  dataDir?: string;
}

/** A small JSON client; every failure becomes an UpdraftError with a readable message. */
export class ApiClient {
  readonly baseUrl: string;
  /** The operator token in use. */
  readonly token: string;

  constructor(opts: ApiOptions) {
    // an empty variable (UPDRAFT_TOKEN= in a unit file or a script) is one not set
    this.baseUrl = (opts.server ?? (process.env.UPDRAFT_SERVER || 'http://127.0.0.1:8080')).replace(/\/+$/, '');
    this.token = opts.token ?? (process.env.UPDRAFT_TOKEN || readTokenFile(opts.dataDir ?? (process.env.UPDRAFT_DATA_DIR || './data')));
  }

  /** Calls the API; `body` is JSON unless it is a stream or buffer (sent as bytes). */
  async call<T>(method: string, route: string, body?: unknown): Promise<T> {
    const isBytes = body instanceof Uint8Array || (typeof body === 'object' && body !== null && 'pipe' in body);
    let res: Response;
    try {
      res = await fetch(this.baseUrl + route, {
        method,
        headers: {
          authorization: `Bearer ${this.token}`,
          ...(body === undefined ? {} : { 'content-type': isBytes ? 'application/octet-stream' : 'application/json' }),
        },
        ...(body === undefined ? {} : { body: isBytes ? (body as BodyInit) : JSON.stringify(body), duplex: 'half' }),
      } as RequestInit);
    } catch (err) {
      // UNAVAILABLE (503): a watch waits through it (job-watch.ts); the exit code stays 1
      throw new UpdraftError('UNAVAILABLE', `cannot reach the Updraft server at ${this.baseUrl}: ${whyUnreachable(err)}`, { cause: err });
    }
    const text = await res.text();
    let parsed: unknown;
    try {
      parsed = text ? JSON.parse(text) : undefined;
    } catch {
      parsed = undefined;
    }
    if (!res.ok) {
      const message = (parsed as { error?: { message?: string } } | undefined)?.error?.message ?? `HTTP ${res.status}`;
      throw new UpdraftError('INTERNAL', message, { status: res.status });
    }
    return parsed as T;
  }
}

function readTokenFile(dataDir: string): string {
  const file = operatorTokenPath(path.resolve(dataDir));
  try {
    return readFileSync(file, 'utf8').trim();
  } catch {
    throw new UpdraftError('UNAUTHORIZED', `no operator token: set UPDRAFT_TOKEN or --token, or run in the directory of the server's data dir (${file} not found)`);
  }
}

/** TLS errors of a certificate the client does not trust (Node's codes). */
const UNTRUSTED = new Set(['UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'SELF_SIGNED_CERT_IN_CHAIN', 'DEPTH_ZERO_SELF_SIGNED_CERT', 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY', 'CERT_HAS_EXPIRED', 'ERR_TLS_CERT_ALTNAME_INVALID']);

/**
 * Why a request got no answer, from fetch's cause (fetch itself only says "fetch failed"): a
 * refused connection is a server not running; an untrusted certificate, or anything else, is
 * named, since "is it running?" would send the operator after a server that is up.
 */
export function whyUnreachable(err: unknown): string {
  const cause = (err as { cause?: { code?: string; message?: string } } | undefined)?.cause;
  const code = cause?.code ?? '';
  if (code === 'ECONNREFUSED') return 'is it running? (npm start)';
  if (UNTRUSTED.has(code)) return `its TLS certificate is not trusted (${cause?.message ?? code}); for Updraft's own CA, set NODE_EXTRA_CA_CERTS=<data-dir>/pki/ca.crt`;
  return `${cause?.message ?? (err as Error | undefined)?.message ?? String(err)}; is it running, and is the URL right (http or https)?`;
}
