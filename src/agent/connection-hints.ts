/**
 * What the daemon adds to a connection error whose cause is most likely its CA files, in its
 * own words (`--ca <file>`, `--cert <file>`). OpenSSL's and mqtt.js's texts name neither the
 * file nor a CA rollover: after a rollover's switch, a QA fleet's agents said only
 * `self-signed certificate in certificate chain`, `connection closed before CONNACK` or
 * `certificate signature failure` (2026-12-06). The original text stays in the line.
 */

/** What the daemon connects with: the files given, and whether the broker URL is TLS. */
export interface ConnectionHintContext {
  /** The device, and the broker URL it connects to (named in the hint of a refused secret). */
  deviceId?: string;
  brokerUrl?: string;
  /** Where the device's secret came from (`--password`, `<install-dir>/.updraft/device-secret`); none given: no secret. */
  secretFrom?: string;
  /** `--ca`: the file the server's certificate is verified with. */
  caFile?: string;
  /** `--cert`: the client certificate presented. */
  certFile?: string;
  /** The broker URL is TLS (`mqtts:`, `ssl:`, `tls:`, `wss:`). */
  tls: boolean;
}

/** The hint for `error` (a connection error's message), or undefined when there is none to give. */
export function connectionErrorHint(error: string, ctx: ConnectionHintContext): string | undefined {
  // CONNACK 4 (mqtt.js: 'Connection refused: Bad username or password'): an unknown, deleted or
  // revoked device, a wrong secret, or another broker than the server's (a Mosquitto of the
  // machine's own on 1883, reached for want of --broker). The agent retries for good and said
  // only the broker's words (QA of the quick start, 2026-12-07)
  if (/bad user ?name or password/i.test(error) && ctx.deviceId !== undefined) {
    const secret = ctx.secretFrom !== undefined ? `its secret (${ctx.secretFrom})` : 'a secret (none given: --password, or <install-dir>/.updraft/device-secret from device register --save)';
    const broker = ctx.brokerUrl !== undefined ? ` at ${ctx.brokerUrl}` : '';
    return `the broker${broker} refused ${ctx.deviceId} and ${secret}: is it the Updraft server's broker (--broker), is ${ctx.deviceId} registered there and not revoked (updraft device show ${ctx.deviceId}), and is the secret the one registration or updraft device rotate-secret gave? The agent keeps retrying`;
  }
  if (!ctx.tls) return undefined;
  const ca = ctx.caFile !== undefined ? `--ca ${ctx.caFile}` : '--ca (none given: the system\'s CAs)';
  // the server's certificate chains to no CA the device trusts: after a switch, an agent given the old CA alone
  if (/self[- ]signed certificate in certificate chain|unable to get local issuer certificate|unable to verify the first certificate|self[- ]signed certificate$/i.test(error)) {
    return `the server's certificate is not of a CA in ${ca}: after a CA rollover give --ca the bundle of the old and new CA, docs/security.md`;
  }
  // the CA of the bundle that names the server certificate's issuer does not verify its signature: a damaged or another CA of that name
  if (/certificate signature failure/i.test(error)) {
    return `a CA in ${ca} has the name of the server certificate's CA but does not verify its signature: a damaged copy, or another CA of that name; copy the CA certificates again from the server (<data-dir>/pki/ca.crt, and pki/next-ca.crt during a CA rollover), docs/security.md`;
  }
  // the server's CRL lists the client certificate (Mosquitto with crl.pem: the device was deleted, its certificates revoked)
  if (/alert certificate revoked/i.test(error) && ctx.certFile !== undefined) {
    return `the server revoked the client certificate of --cert ${ctx.certFile}: its device was deleted (its certificates are listed in the broker's crl.pem); register it again and give it a new certificate (updraft device cert), docs/security.md`;
  }
  // a TLS alert of the server about the client certificate (OpenSSL's 'tlsv1 alert unknown ca': Mosquitto over TLS 1.2, say)
  if (/alert (unknown ca|bad certificate|certificate unknown|certificate required)/i.test(error) && ctx.certFile !== undefined) {
    return `the server refused the client certificate of --cert ${ctx.certFile}: its CA may not be one the server trusts, a CA rollover's previous CA once dropped (updraft ca drop-previous) for one; give the device a certificate of the current CA (updraft device cert), docs/security.md`;
  }
  // the TLS handshake ended by the server before any CONNACK: among other causes, a client certificate of a CA it no longer trusts
  if (error === 'connection closed before CONNACK' && ctx.certFile !== undefined) {
    return `the server may not trust the CA of --cert ${ctx.certFile}, for one: a certificate of a CA rollover's previous CA is refused once the server dropped it (updraft ca drop-previous); give the device a certificate of the current CA (updraft device cert), docs/security.md`;
  }
  return undefined;
}
