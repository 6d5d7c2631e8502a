/**
 * The operator's own TLS files, checked at start-up against the settings that named them:
 * OpenSSL's own words ("key values mismatch", "no start line") named neither the listener nor
 * the file, so a server with two TLS listeners left the operator guessing which pair was wrong.
 */
import { createSecureContext } from 'node:tls';
import { UpdraftError } from '../errors.ts';
import type { ServerTls } from '../pki/server-tls.ts';

/** Which listener's files: the settings and flags that name them. */
export interface TlsFileSettings {
  /** `http` or `mqtt`: the settings are `<prefix>.tlsCert` and `<prefix>.tlsKey`, the flags `--<prefix>-tls-cert`, `--<prefix>-tls-key`. */
  prefix: 'http' | 'mqtt';
  certFile: string;
  keyFile: string;
}

/** Throws a CONFIG error (status 400: the settings are wrong) naming the setting and file when the PEM is unusable or the key is not the certificate's. */
export function checkTlsFiles(material: ServerTls, s: TlsFileSettings): void {
  const cert = `${s.prefix}.tlsCert (--${s.prefix}-tls-cert ${s.certFile})`;
  const key = `${s.prefix}.tlsKey (--${s.prefix}-tls-key ${s.keyFile})`;
  const attempt = (options: { cert?: string; key?: string }, message: (reason: string) => string) => {
    try {
      createSecureContext(options);
    } catch (err) {
      throw new UpdraftError('CONFIG', message((err as Error).message), { cause: err, status: 400 });
    }
  };
  attempt({ cert: material.cert }, (why) => `${cert} is not a PEM certificate: ${why}`);
  attempt({ key: material.key }, (why) => `${key} is not a PEM private key (unencrypted): ${why}`);
  attempt({ cert: material.cert, key: material.key }, (why) => `${key} is not the private key of ${cert}: give the key the certificate was issued for (${why})`);
}
