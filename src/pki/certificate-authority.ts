/**
 * Updraft's own certificate authority (issue 5, device identity): issues X.509 client
 * certificates whose subject CN is the device id, for MQTT over TLS with mutual
 * authentication, and server certificates for the MQTTS and HTTPS listeners.
 *
 * Kept in `<dataDir>/pki/`: `ca.crt` (give it to devices) and `ca.key` (mode 0600, never
 * leaves the server). During a rollover (`rolloverCa`, docs/security.md "When the CA nears its
 * end") also `previous-ca.crt`, the CA it replaced, whose client certificates are still
 * accepted until it expires (or is dropped), and, before it, `next-ca.crt`/`next-ca.key`, the
 * CA prepared to replace it, which devices are given before the switch. Keys are made by node:crypto (RSA 2048: every TLS stack of every
 * device speaks it); node:crypto cannot build certificates, so node-forge assembles and
 * signs them. Nothing here verifies certificates: Node's TLS (OpenSSL) does that.
 */
import { X509Certificate, constants, createHash, createPrivateKey, createPublicKey, generateKeyPair, randomBytes, sign, verify, type KeyObject } from 'node:crypto';
import { mkdir, readFile, rename, rm } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { promisify } from 'node:util';
import forge from 'node-forge';
import { OPERATOR_USERNAME } from '../broker/authenticator.ts';
import { UpdraftError } from '../errors.ts';
import { isValidId } from '../protocol/topics.ts';
import { syncDir, writeFileAtomic } from '../util/atomic-file.ts';

const generateKeyPairAsync = promisify(generateKeyPair);

/** A certificate and its private key, both PEM. */
export interface IssuedCertificate {
  certificate: string;
  privateKey: string;
}

/** Where the CA lives under a data directory: the current one, the one it replaced (`previous`), the one prepared to replace it (`next*`). */
export function caPaths(dataDir: string): { dir: string; cert: string; key: string; previous: string; previousKey: string; dropped: string; droppedKey: string; nextCert: string; nextKey: string } {
  const dir = path.join(path.resolve(dataDir), 'pki');
  // previousKey: kept by a rollover for the previous CA's CRLs only (pki/revocation-list.ts);
  // dropped, droppedKey: what drop-previous set aside, for an undo
  return { dir, cert: path.join(dir, 'ca.crt'), key: path.join(dir, 'ca.key'), previous: path.join(dir, 'previous-ca.crt'), previousKey: path.join(dir, 'previous-ca.key'), dropped: path.join(dir, 'previous-ca.crt.dropped'), droppedKey: path.join(dir, 'previous-ca.key.dropped'), nextCert: path.join(dir, 'next-ca.crt'), nextKey: path.join(dir, 'next-ca.key') };
}

/**
 * The extension by which a CA certificate names the CA it replaces: the SHA-1 hash of that
 * CA's certificate (DER), in an OCTET STRING. Microsoft's CA renewal marks its new CA
 * certificates so (szOID_CERTSRV_PREVIOUSCERT_HASH); Updraft's rollover does the same, and the
 * agent reads it (agent/certificate-renewer.ts): a device whose certificate's CA is named by a
 * CA of its --ca bundle knows that CA has a successor and moves to it, while an unrelated CA in
 * the bundle (the CA of an operator's own server certificate) means nothing.
 */
export const PREVIOUS_CA_HASH_OID = '1.3.6.1.4.1.311.21.2';

/** The previous-CA hash of a CA certificate (DER): what its successor's extension holds. */
export function caCertificateHash(der: Buffer): Buffer {
  return createHash('sha1').update(der).digest();
}

const DAY_MS = 86_400_000;
/** Clock skew between server and devices tolerated at the start of a validity period. */
export const SKEW_MS = 5 * 60_000;
/**
 * How far back the CA's own certificate and the server certificates it issues start: a day.
 * Devices verify those with their own clocks, which drift, and a CA rollover reissues the
 * server certificate at the switch: with SKEW_MS alone, a device more than 5 minutes behind
 * refused the server right after it (QA of the CA rollover, 2026-12-06). Device certificates
 * keep SKEW_MS: the server reads when one was issued from its notBefore (deviceCertificateKey,
 * the embedded broker's check against a re-registration), and verifies it with its own clock.
 */
export const BACKDATE_MS = 86_400_000;

async function newRsaKey(): Promise<{ privateKey: forge.pki.rsa.PrivateKey; publicKey: forge.pki.rsa.PublicKey; pem: string }> {
  const { privateKey, publicKey } = await generateKeyPairAsync('rsa', {
    modulusLength: 2048,
    publicKeyEncoding: { type: 'spki', format: 'pem' },
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
  });
  return { privateKey: forge.pki.privateKeyFromPem(privateKey) as forge.pki.rsa.PrivateKey, publicKey: forge.pki.publicKeyFromPem(publicKey) as forge.pki.rsa.PublicKey, pem: privateKey };
}

/** node:crypto's sign and verify in their callback form: OpenSSL works on libuv's thread pool, not on the server's one JavaScript thread. */
const signOffThread = promisify(sign) as (algorithm: string, data: Buffer, key: KeyObject) => Promise<Buffer>;
const verifyOffThread = promisify(verify) as (algorithm: string, data: Buffer, key: KeyObject, signature: Buffer) => Promise<boolean>;

/**
 * Signs `cert` (SHA-256 with RSA) as forge's `cert.sign` does, but with node:crypto: forge
 * assembles the to-be-signed part, OpenSSL signs it. forge's own RSA, in JavaScript, took
 * about 30 ms of the server's one thread per certificate; OpenSSL about 1 ms, and since
 * 2026-12-06 on the thread pool (the callback form), not on the server's thread: after a CA
 * switch every agent renews as it reconnects, and a fleet of them must not stall the broker,
 * the replica and the API meanwhile.
 */
async function signNatively(cert: forge.pki.Certificate, key: KeyObject): Promise<void> {
  const withSignature = cert as forge.pki.Certificate & { md: forge.md.MessageDigest; tbsCertificate: forge.asn1.Asn1 };
  withSignature.md = forge.md.sha256.create();
  const oid = forge.pki.oids['sha256WithRSAEncryption']!;
  cert.signatureOid = oid;
  cert.siginfo.algorithmOid = oid;
  // in forge since 0.7, used by its own cert.sign; not in its type definitions
  withSignature.tbsCertificate = (forge.pki as unknown as { getTBSCertificate(c: forge.pki.Certificate): forge.asn1.Asn1 }).getTBSCertificate(cert);
  const tbs = Buffer.from(forge.asn1.toDer(withSignature.tbsCertificate).getBytes(), 'binary');
  cert.signature = (await signOffThread('sha256', tbs, key)).toString('binary');
}

/** The digest of each PKCS #1 v1.5 RSA signature algorithm a certificate signing request may be signed with. */
const CSR_RSA_DIGESTS: Record<string, string> = {
  [forge.pki.oids['sha1WithRSAEncryption']!]: 'sha1',
  [forge.pki.oids['sha256WithRSAEncryption']!]: 'sha256',
  [forge.pki.oids['sha384WithRSAEncryption']!]: 'sha384',
  [forge.pki.oids['sha512WithRSAEncryption']!]: 'sha512',
};

/** RSASSA-PSS parameters as forge reads them from a signature's AlgorithmIdentifier (its salt length is not read right: not used). */
interface PssParameters {
  hash?: { algorithmOid?: string };
  mgf?: { algorithmOid?: string; hash?: { algorithmOid?: string } };
}

/**
 * How OpenSSL checks `csr`'s signature: its digest, and whether it is RSASSA-PSS; undefined for an algorithm not checked (an MGF1 digest other than the signature's,
 * which node:crypto cannot express, or no RSA signature at all).
 */
function csrSignatureCheck(csr: forge.pki.CertificateSigningRequest): { digest: string; pss?: true } | undefined {
  const oid = csr.signatureOid ?? '';
  const digest = CSR_RSA_DIGESTS[oid];
  if (digest !== undefined) return { digest };
  if (oid !== forge.pki.oids['RSASSA-PSS']) return undefined;
  const p = (csr as unknown as { signatureParameters?: PssParameters }).signatureParameters ?? {};
  // an absent parameter is RFC 4055's default (SHA-1); one named by an OID forge does not know
  // is no default: refused (read as SHA-1, a request declaring SHA3-256 and signed with SHA-1
  // was certified: review of 423478c)
  const name = (o: string | undefined, absent: string) => (o === undefined ? absent : (forge.pki.oids as Record<string, string | undefined>)[o]);
  const hash = name(p.hash?.algorithmOid, 'sha1');
  const mgfHash = name(p.mgf?.hash?.algorithmOid, 'sha1');
  if (hash === undefined || !['sha1', 'sha256', 'sha384', 'sha512'].includes(hash) || mgfHash !== hash || name(p.mgf?.algorithmOid, 'mgf1') !== 'mgf1') return undefined;
  return { digest: hash, pss: true };
}

/**
 * Whether `csr` is signed by its own key (proof that the device holds it), checked by OpenSSL
 * on the thread pool: forge's check, RSA in JavaScript, took about 1 ms of the server's thread
 * per renewal, and refused RSASSA-PSS requests made by OpenSSL (its salt length), which are
 * checked here too (since 2026-12-06).
 */
async function csrSignedByOwnKey(csr: forge.pki.CertificateSigningRequest): Promise<boolean> {
  const check = csrSignatureCheck(csr);
  // said as such, not as a signature that does not match (review of 423478c)
  if (check === undefined) throw new UpdraftError('BAD_REQUEST', 'the certificate signing request is signed with an algorithm this server does not check: RSA (PKCS #1 v1.5, or RSASSA-PSS with MGF1 of the same digest) with SHA-1, SHA-256, SHA-384 or SHA-512');
  try {
    // the request's own bytes (captured as parsed), as forge's csr.verify() digests them
    const parsed = csr as forge.pki.CertificateSigningRequest & { certificationRequestInfo?: forge.asn1.Asn1 };
    const info = parsed.certificationRequestInfo ?? (forge.pki as unknown as { getCertificationRequestInfo(c: forge.pki.CertificateSigningRequest): forge.asn1.Asn1 }).getCertificationRequestInfo(csr);
    const data = Buffer.from(forge.asn1.toDer(info).getBytes(), 'binary');
    const key = createPublicKey(forge.pki.publicKeyToPem(csr.publicKey as forge.pki.rsa.PublicKey));
    const signature = Buffer.from(csr.signature as string, 'binary');
    if (check.pss === undefined) return await verifyOffThread(check.digest, data, key, signature);
    // the salt's length found from the signature (OpenSSL's "auto"): forge reads the one the
    // request declares wrong (0 for OpenSSL's default, 222), and any length proves the key
    return await verifyOffThread(check.digest, data, { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: constants.RSA_PSS_SALTLEN_AUTO } as unknown as KeyObject, signature);
  } catch {
    return false;
  }
}

/** A random positive serial number (RFC 5280 §4.1.2.2: at most 20 octets, positive). */
function serial(): string {
  const b = randomBytes(16);
  b[0] = (b[0]! & 0x7f) | 0x10;
  return b.toString('hex');
}

/**
 * `days` from now, but never past `capMs` (the issuing CA's own expiry): a certificate that
 * outlived its CA would claim a validity no verifier grants (RFC 5280 §6.1.3 checks every
 * certificate of the path at the same time), and a device or server would be refused at the
 * CA's expiry with a certificate that still looked good for months.
 */
function validity(cert: forge.pki.Certificate, days: number, capMs = Infinity, backdateMs = SKEW_MS): void {
  const now = Date.now();
  cert.validity.notBefore = new Date(now - backdateMs);
  cert.validity.notAfter = new Date(Math.min(now + days * DAY_MS, capMs));
}

/**
 * No device certificate is issued for the operators' MQTT user name: behind Mosquitto with
 * certificate logins (`mosquitto-config --updraft-ca`) the certificate's CN is the user name,
 * and one named `operator` got the operators' rules on the device listener: every device's
 * topics and the instances' events (review, 2026-12-06). Registrations refuse the id since
 * 2026-12-04; a device registered so before can still ask for one (`device cert`, a renewal).
 */
function refuseReservedName(deviceId: string): void {
  if (deviceId === OPERATOR_USERNAME) throw new UpdraftError('FORBIDDEN', `no certificate is issued for "${deviceId}": it is the MQTT user name of operators and Updraft's instances, which a certificate login would take (register the device under another id)`);
}

/** The CA: its certificate (PEM) and the means to issue certificates. */
export class CertificateAuthority {
  /** PEM of the CA certificate: what devices and clients trust. */
  readonly certificate: string;
  private readonly cert: forge.pki.Certificate;
  private readonly x509: X509Certificate;
  private readonly nativeKey: KeyObject;
  /** PEM of the CA this one replaced (`pki/previous-ca.crt`), when a rollover left one: its device certificates are accepted while it is valid. */
  readonly previousCertificate: string | undefined;
  private readonly previous: X509Certificate | undefined;
  private moved = 0;

  /** Only assigns; use `loadCa`, `createCa` or `loadOrCreateCa`. */
  constructor(certPem: string, keyPem: string, previousPem?: string) {
    this.certificate = certPem;
    this.cert = forge.pki.certificateFromPem(certPem);
    this.x509 = new X509Certificate(certPem);
    this.nativeKey = createPrivateKey(keyPem);
    this.previousCertificate = previousPem;
    this.previous = previousPem === undefined ? undefined : new X509Certificate(previousPem);
  }

  /** When the CA certificate expires (ms since the epoch): no certificate it issues is valid past it. */
  get notAfter(): number {
    return Date.parse(this.x509.validTo);
  }

  /**
   * Devices given a certificate of this CA for one of the previous CA (renewed over MQTT), since
   * start: kept here, on the one CA object the renewal service and the metrics share.
   */
  get movedOffPrevious(): number {
    return this.moved;
  }

  /** Counts a device moved off the previous CA (pki/certificate-renewal.ts). */
  noteMovedOffPrevious(): void {
    this.moved++;
  }

  /** When the previous CA (`pki/previous-ca.crt`) expires (ms), undefined without one. */
  get previousNotAfter(): number | undefined {
    return this.previous === undefined ? undefined : Date.parse(this.previous.validTo);
  }

  /** True when there is a previous CA and it is valid at `nowMs`: its device certificates are accepted. */
  trustsPrevious(nowMs = Date.now()): boolean {
    const p = this.previous;
    return p !== undefined && Date.parse(p.validFrom) - SKEW_MS <= nowMs && nowMs < Date.parse(p.validTo);
  }

  /**
   * The CAs whose client certificates the MQTTS listener accepts (PEM): the current one, and
   * the previous one while it is valid. An expired previous CA is left out (OpenSSL would
   * refuse its chains anyway; left out, the server says so instead: security-setup.ts).
   */
  clientCaBundle(nowMs = Date.now()): string {
    return this.trustsPrevious(nowMs) ? joinPem(this.certificate, this.previousCertificate!) : this.certificate;
  }

  /** True when `certificatePem` (the first certificate of a PEM chain) was issued by this CA. */
  issued(certificatePem: string): boolean {
    try {
      const x509 = new X509Certificate(certificatePem);
      return x509.checkIssued(this.x509) && x509.verify(this.x509.publicKey);
    } catch {
      return false;
    }
  }

  /** The notAfter cap of what this CA issues now; CONFLICT once the CA itself has expired (it can vouch for nothing). */
  private capMs(): number {
    if (this.notAfter <= Date.now()) throw new UpdraftError('CONFLICT', `Updraft's CA (pki/ca.crt) expired at ${new Date(this.notAfter).toISOString()}: no certificate it issues is valid; replace it (docs/security.md, "When the CA nears its end")`);
    return this.notAfter;
  }

  /** A client certificate for `deviceId` (subject CN = device id, extended key usage clientAuth), valid `days` but not past the CA. */
  async issueDeviceCertificate(deviceId: string, days = 730): Promise<IssuedCertificate> {
    if (!isValidId(deviceId)) throw new UpdraftError('BAD_REQUEST', `"${deviceId}" is not a valid device id`);
    refuseReservedName(deviceId);
    return this.issue([{ name: 'commonName', value: deviceId }, { name: 'organizationName', value: 'Updraft device' }], days, SKEW_MS, [
      { name: 'keyUsage', critical: true, digitalSignature: true, keyEncipherment: true },
      { name: 'extKeyUsage', clientAuth: true },
    ]);
  }

  /**
   * The public key of `certificatePem` when it is a device certificate this CA issued to
   * `deviceId`, valid at `nowMs` (give or take `SKEW_MS`), and when it was issued (its
   * notBefore, which `validity` sets `SKEW_MS` early, plus those minutes) and expires (its
   * notAfter, ms); FORBIDDEN naming
   * what is wrong otherwise (another CA's, another device's, expired), BAD_REQUEST for what
   * is no certificate.
   */
  deviceCertificateKey(certificatePem: string, deviceId: string, nowMs = Date.now()): { key: KeyObject; issuedAt: number; expiresAt: number; byPreviousCa: boolean } {
    let x509: X509Certificate;
    try {
      x509 = new X509Certificate(certificatePem);
    } catch {
      throw new UpdraftError('BAD_REQUEST', 'certificate is not a PEM X.509 certificate');
    }
    const by = (ca: X509Certificate) => x509.checkIssued(ca) && x509.verify(ca.publicKey);
    // during a rollover, a certificate of the previous CA proves the device as well, while that CA is valid
    const byPreviousCa = !by(this.x509) && this.previous !== undefined && by(this.previous);
    if (byPreviousCa && !this.trustsPrevious(nowMs)) throw new UpdraftError('FORBIDDEN', `the current certificate was issued by the previous CA (pki/previous-ca.crt), which expired at ${this.previous!.validTo}: a device whose certificate expired is given a new one by the operator (updraft device cert)`);
    if (!byPreviousCa && !by(this.x509)) throw new UpdraftError('FORBIDDEN', "the current certificate was not issued by this server's CA");
    const cn = /^CN=(.*)$/m.exec(x509.subject)?.[1];
    if (cn !== deviceId) throw new UpdraftError('FORBIDDEN', `the current certificate is ${cn === undefined ? 'no device' : `device ${cn}`}'s, not ${deviceId}'s`);
    if (Date.parse(x509.validTo) + SKEW_MS < nowMs) throw new UpdraftError('FORBIDDEN', `the current certificate expired at ${new Date(x509.validTo).toISOString()}: a device whose certificate expired is given a new one by the operator (updraft device cert)`);
    if (Date.parse(x509.validFrom) - SKEW_MS > nowMs) throw new UpdraftError('FORBIDDEN', 'the current certificate is not valid yet');
    return { key: x509.publicKey, issuedAt: Date.parse(x509.validFrom) + SKEW_MS, expiresAt: Date.parse(x509.validTo), byPreviousCa };
  }

  /**
   * A client certificate for `deviceId` over the key of `csrPem` (PKCS #10), which the device
   * made and keeps: the request must be signed by that key (it holds it), name the device as
   * its CN, and carry an RSA key of at least 2048 bits. BAD_REQUEST naming what is wrong.
   */
  async issueDeviceCertificateFromRequest(deviceId: string, csrPem: string, days = 730): Promise<{ certificate: string; notAfter: number }> {
    if (!isValidId(deviceId)) throw new UpdraftError('BAD_REQUEST', `"${deviceId}" is not a valid device id`);
    refuseReservedName(deviceId);
    let csr: forge.pki.CertificateSigningRequest;
    try {
      csr = forge.pki.certificationRequestFromPem(csrPem);
    } catch (err) {
      throw new UpdraftError('BAD_REQUEST', `csr is not a PEM certificate signing request with an RSA key: ${(err as Error).message}`);
    }
    const cn = csr.subject.getField('CN')?.value as string | undefined;
    if (cn !== deviceId) throw new UpdraftError('BAD_REQUEST', `the certificate signing request names ${cn === undefined ? 'no device' : `device ${cn}`}, not ${deviceId}`);
    const publicKey = csr.publicKey as forge.pki.rsa.PublicKey | null;
    if (!publicKey || publicKey.n.bitLength() < 2048) throw new UpdraftError('BAD_REQUEST', 'the certificate signing request needs an RSA key of at least 2048 bits');
    // e = 65537, as every RSA key generator makes it: with e = 1 a "signature" is the padding
    // itself, made without any private key, and a key nobody holds got a certificate whose key
    // anyone can use; a huge e makes each handshake of that device cost the server more (review)
    if (publicKey.e.toString(10) !== '65537') throw new UpdraftError('BAD_REQUEST', 'the certificate signing request needs an RSA key whose public exponent is 65537');
    if (!(await csrSignedByOwnKey(csr))) throw new UpdraftError('BAD_REQUEST', 'the certificate signing request is not signed by its own key');
    const cert = forge.pki.createCertificate();
    cert.publicKey = publicKey;
    cert.serialNumber = serial();
    validity(cert, days, this.capMs());
    cert.setSubject([{ name: 'commonName', value: deviceId }, { name: 'organizationName', value: 'Updraft device' }]);
    cert.setIssuer(this.cert.subject.attributes);
    cert.setExtensions([
      { name: 'basicConstraints', cA: false, critical: true },
      { name: 'keyUsage', critical: true, digitalSignature: true, keyEncipherment: true },
      { name: 'extKeyUsage', clientAuth: true },
      { name: 'subjectKeyIdentifier' },
    ]);
    await signNatively(cert, this.nativeKey);
    return { certificate: forge.pki.certificateToPem(cert), notAfter: Math.floor(cert.validity.notAfter.getTime() / 1000) };
  }

  /** A server certificate valid for `hosts` (DNS names and IP addresses), `days` but not past the CA. */
  async issueServerCertificate(hosts: string[], days = 730): Promise<IssuedCertificate> {
    if (hosts.length === 0) throw new UpdraftError('CONFIG', 'a server certificate needs at least one host name');
    const altNames = hosts.map((h) => (net.isIP(h) ? { type: 7, ip: h } : { type: 2, value: h }));
    return this.issue([{ name: 'commonName', value: hosts[0]! }, { name: 'organizationName', value: 'Updraft server' }], days, BACKDATE_MS, [
      { name: 'keyUsage', critical: true, digitalSignature: true, keyEncipherment: true },
      { name: 'extKeyUsage', serverAuth: true },
      { name: 'subjectAltName', altNames },
    ]);
  }

  private async issue(subject: forge.pki.CertificateField[], days: number, backdateMs: number, extensions: object[]): Promise<IssuedCertificate> {
    const keys = await newRsaKey();
    const cert = forge.pki.createCertificate();
    cert.publicKey = keys.publicKey;
    cert.serialNumber = serial();
    validity(cert, days, this.capMs(), backdateMs);
    cert.setSubject(subject);
    cert.setIssuer(this.cert.subject.attributes);
    cert.setExtensions([{ name: 'basicConstraints', cA: false, critical: true }, ...extensions, { name: 'subjectKeyIdentifier' }]);
    await signNatively(cert, this.nativeKey);
    return { certificate: forge.pki.certificateToPem(cert), privateKey: keys.pem };
  }
}

/** Reads `file`, undefined when it does not exist; CONFIG naming it otherwise. */
export async function readOptional(file: string): Promise<string | undefined> {
  try {
    return await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new UpdraftError('CONFIG', `cannot read ${file}: ${(err as Error).message}`, { cause: err });
  }
}

/**
 * `pki/previous-ca.crt`, parsed; CONFIG naming the file and the way back when it is no
 * certificate (cut off, garbled). The server stopped with OpenSSL's words alone (`bad end
 * line`), naming only the directory (QA of the CA rollover, 2026-12-06).
 */
function readPrevious(p: ReturnType<typeof caPaths>, pem: string): X509Certificate {
  try {
    return new X509Certificate(pem);
  } catch (err) {
    throw new UpdraftError(
      'CONFIG',
      `${p.previous} is not a readable certificate (${(err as Error).message}): it is the CA a rollover replaced, and devices whose client certificates it issued connect with it until they move; restore it from a backup or from another instance's pki/, then start again (removing it, as updraft ca drop-previous does, refuses those devices)`,
      { cause: err },
    );
  }
}

/** Loads the CA of `dataDir` (with the previous CA a rollover left), or undefined when there is none. */
export async function loadCa(dataDir: string): Promise<CertificateAuthority | undefined> {
  const p = caPaths(dataDir);
  let cert: string;
  let key: string;
  try {
    [cert, key] = await Promise.all([readFile(p.cert, 'utf8'), readFile(p.key, 'utf8')]);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new UpdraftError('CONFIG', `cannot read the CA in ${p.dir}: ${(err as Error).message}`, { cause: err });
  }
  const previous = await readOptional(p.previous);
  try {
    // a key that is not the certificate's would sign certificates no device or server accepts
    if (!new X509Certificate(cert).checkPrivateKey(createPrivateKey(key))) {
      const finished = await finishRollover(p, cert, key, previous);
      if (finished === undefined) throw new Error('pki/ca.key is not the private key of pki/ca.crt');
      cert = finished;
    }
  } catch (err) {
    throw new UpdraftError('CONFIG', `the CA in ${p.dir} cannot be used: ${(err as Error).message}`, { cause: err });
  }
  if (previous !== undefined) readPrevious(p, previous);
  return new CertificateAuthority(cert, key, previous);
}

/**
 * A rollover stopped between its two renames (`rolloverCa`: the new key is `pki/ca.key`, the
 * new certificate still `pki/next-ca.crt`, the old one `pki/ca.crt` and already kept as
 * `pki/previous-ca.crt`) is finished: the new certificate renamed into place, and returned.
 * Undefined for any other key that is not the certificate's (no guess is made then). Before
 * 2026-12-06 such a stop left a CA that nothing could load, neither the server nor a second
 * rollover, and without a prepared CA the new certificate existed nowhere (review).
 */
async function finishRollover(p: ReturnType<typeof caPaths>, cert: string, key: string, previous: string | undefined): Promise<string | undefined> {
  const next = await readOptional(p.nextCert);
  if (next === undefined || previous === undefined || previous.trim() !== cert.trim()) return undefined;
  if (!new X509Certificate(next).checkPrivateKey(createPrivateKey(key))) return undefined;
  await rename(p.nextCert, p.cert);
  return next;
}

/** True when pki/ holds a rollover stopped between its renames (what finishRollover finishes). */
async function stoppedBetweenRenames(p: ReturnType<typeof caPaths>): Promise<boolean> {
  const [cert, key, next, previous] = await Promise.all([readOptional(p.cert), readOptional(p.key), readOptional(p.nextCert), readOptional(p.previous)]);
  if (cert === undefined || key === undefined || next === undefined || previous === undefined || previous.trim() !== cert.trim()) return false;
  try {
    const k = createPrivateKey(key);
    return !new X509Certificate(cert).checkPrivateKey(k) && new X509Certificate(next).checkPrivateKey(k);
  } catch {
    return false;
  }
}

function joinPem(a: string, b: string): string {
  return `${a}${a.endsWith('\n') ? '' : '\n'}${b}`;
}

/** True when the certificate `pem` is valid at `nowMs` (its start allowing for clock skew, as `trustsPrevious`). */
export function validAt(pem: string, nowMs: number): boolean {
  const x = new X509Certificate(pem);
  return Date.parse(x.validFrom) - SKEW_MS <= nowMs && nowMs < Date.parse(x.validTo);
}

/** What `readClientCaBundle` read. */
export interface ClientCaBundle {
  /** The CA certificates (PEM): `pki/ca.crt`, then `pki/previous-ca.crt` while it is valid. */
  pem: string;
  /** When the previous CA of a rollover expires (ms), undefined without one. */
  previousNotAfter?: number;
  /** True when the previous CA is in `pem`; false without one, or when it has expired (left out). */
  previousTrusted: boolean;
}

/**
 * The CAs whose client certificates a broker outside the server must accept (an external
 * Mosquitto's `cafile`, `updraft broker mosquitto-config --updraft-ca`), read from `dataDir`
 * by the same rule as the embedded broker's `clientCaBundle`: the current CA and, during a
 * rollover, the previous one while it is valid. Certificates only: the CA key is not read (the
 * broker's host needs none). NOT_FOUND without a CA; CONFIG for a file that is no certificate.
 */
export async function readClientCaBundle(dataDir: string, nowMs = Date.now()): Promise<ClientCaBundle> {
  const p = caPaths(dataDir);
  const current = await readOptional(p.cert);
  if (current === undefined) throw new UpdraftError('NOT_FOUND', `there is no CA in ${p.dir} (${p.cert}): start the server once, or make it: updraft ca init`);
  const previous = await readOptional(p.previous);
  let previousNotAfter: number | undefined;
  let previousTrusted = false;
  try {
    new X509Certificate(current);
  } catch (err) {
    throw new UpdraftError('CONFIG', `the CA in ${p.dir} cannot be used: ${(err as Error).message}`, { cause: err });
  }
  if (previous !== undefined) {
    previousNotAfter = Date.parse(readPrevious(p, previous).validTo);
    previousTrusted = validAt(previous, nowMs);
  }
  return { pem: previousTrusted ? joinPem(current, previous!) : current, ...(previousNotAfter !== undefined ? { previousNotAfter } : {}), previousTrusted };
}

/** A new self-signed CA (10 years), PEM; naming `replaces` (its certificate, PEM) as the CA it succeeds. */
async function makeCa(commonName: string, replaces?: string): Promise<{ certPem: string; keyPem: string }> {
  const keys = await newRsaKey();
  const cert = forge.pki.createCertificate();
  cert.publicKey = keys.publicKey;
  cert.serialNumber = serial();
  validity(cert, 3650, Infinity, BACKDATE_MS);
  const name = [{ name: 'commonName', value: commonName }, { name: 'organizationName', value: 'Updraft' }];
  cert.setSubject(name);
  cert.setIssuer(name);
  const extensions: object[] = [
    { name: 'basicConstraints', cA: true, pathLenConstraint: 0, critical: true },
    { name: 'keyUsage', critical: true, keyCertSign: true, cRLSign: true },
    { name: 'subjectKeyIdentifier' },
  ];
  if (replaces !== undefined) {
    const hash = caCertificateHash(new X509Certificate(replaces).raw);
    extensions.push({ id: PREVIOUS_CA_HASH_OID, critical: false, value: forge.asn1.toDer(forge.asn1.create(forge.asn1.Class.UNIVERSAL, forge.asn1.Type.OCTETSTRING, false, hash.toString('binary'))).getBytes() });
  }
  cert.setExtensions(extensions);
  await signNatively(cert, createPrivateKey(keys.pem));
  return { certPem: forge.pki.certificateToPem(cert), keyPem: keys.pem };
}

/** Creates the CA of `dataDir`; CONFLICT when one exists (re-creating it would orphan every device certificate). */
export async function createCa(dataDir: string, commonName = 'Updraft device CA'): Promise<CertificateAuthority> {
  if (await loadCa(dataDir)) throw new UpdraftError('CONFLICT', `a CA already exists in ${caPaths(dataDir).dir}; every device certificate depends on it, so it is kept (to replace it: updraft ca rollover)`);
  const p = caPaths(dataDir);
  const { certPem, keyPem } = await makeCa(commonName);
  await mkdir(p.dir, { recursive: true, mode: 0o700 });
  await writeFileAtomic(p.key, keyPem, 0o600);
  await writeFileAtomic(p.cert, certPem, 0o644);
  return new CertificateAuthority(certPem, keyPem);
}

/** The CA of `dataDir`, created on first use. */
export async function loadOrCreateCa(dataDir: string): Promise<{ ca: CertificateAuthority; created: boolean }> {
  const ca = await loadCa(dataDir);
  return ca ? { ca, created: false } : { ca: await createCa(dataDir), created: true };
}

/** The subject CN of a certificate. */
function commonNameOf(pem: string): string | undefined {
  return /^CN=(.*)$/m.exec(new X509Certificate(pem).subject)?.[1];
}

/**
 * A name for the CA that replaces `current`: OpenSSL finds a certificate's issuer by its name,
 * and our certificates carry no authority key identifier, so two CAs of one name, trusted side
 * by side, would make the old CA's certificates fail against the new CA's key (or the reverse).
 */
function successorName(current: string, requested: string | undefined, nowMs: number): string {
  const oldName = commonNameOf(current);
  if (requested !== undefined) {
    if (requested === oldName) throw new UpdraftError('BAD_REQUEST', `--name "${requested}" is the current CA's name: the new CA needs another, since both are trusted side by side and TLS tells them apart by name`);
    return requested;
  }
  // the time to the second: a date alone named a CA made by a rollover and its successor made
  // the same day alike (a second rollover, a --prepare on the day of one), which locked devices
  // out, and an older CA of the day may still be in devices' --ca bundles; should the current
  // CA have been made in the same second, a number one above its own
  const base = (oldName ?? 'Updraft device CA').replace(/ \d{4}-\d{2}-\d{2}( \d{2}:\d{2}:\d{2}Z)?( \(\d+\))?$/, '');
  const made = `${base} ${new Date(nowMs).toISOString().slice(0, 19).replace('T', ' ')}Z`;
  const numbered = oldName === undefined ? undefined : /^(.*) \((\d+)\)$/.exec(oldName);
  if ((numbered?.[1] ?? oldName) !== made) return made;
  return `${made} (${Number(numbered?.[2] ?? 1) + 1})`;
}

/**
 * `updraft ca rollover --prepare`: makes the CA that will replace the current one, as
 * `pki/next-ca.crt` and `pki/next-ca.key`, and changes nothing the server uses. Devices that
 * verify the server with Updraft's CA need it in their --ca before the switch (the server's
 * certificate is then reissued by it). CONFLICT when one is prepared already (it may be on
 * devices by now) or when there is no CA yet.
 */
export async function prepareNextCa(dataDir: string, name?: string): Promise<{ certificate: string; notAfter: number }> {
  const p = caPaths(dataDir);
  const ca = await loadCa(dataDir);
  if (!ca) throw new UpdraftError('NOT_FOUND', `there is no CA in ${p.dir} to replace; make one: updraft ca init`);
  if ((await readOptional(p.nextCert)) !== undefined) throw new UpdraftError('CONFLICT', `a next CA is prepared already (${p.nextCert}): it may be on devices by now, so it is kept; switch to it with updraft ca rollover`);
  // during a rollover the switch to a CA prepared now is refused until the previous CA is
  // dropped, and the bundle hint (current and next) would leave the previous CA out of
  // devices' files while some still hold its certificates (QA of the CA rollover, 2026-12-06)
  const nowMs = Date.now();
  if (ca.trustsPrevious(nowMs) && ca.previousCertificate !== ca.certificate) {
    throw new UpdraftError('CONFLICT', `a rollover is under way: the previous CA (${p.previous}) is trusted until ${new Date(ca.previousNotAfter!).toISOString()}, and no next CA can be switched to before it is dropped; once no device needs it, remove it with updraft ca drop-previous, then prepare the next one`);
  }
  const { certPem, keyPem } = await makeCa(successorName(ca.certificate, name, nowMs), ca.certificate);
  await writeFileAtomic(p.nextKey, keyPem, 0o600);
  await writeFileAtomic(p.nextCert, certPem, 0o644);
  return { certificate: certPem, notAfter: Date.parse(new X509Certificate(certPem).validTo) };
}

/** What `rolloverCa` did. */
export interface Rollover {
  /** The new current CA (PEM) and when it expires (ms). */
  certificate: string;
  notAfter: number;
  /** When the previous CA expires (ms): its client certificates are accepted until then. */
  previousNotAfter: number;
  /** True when the new CA was the one `prepareNextCa` made (devices may have it already). */
  prepared: boolean;
  /** True when this finished a rollover stopped between its renames (finishRollover), rather than starting one. */
  resumed?: boolean;
}

/**
 * `updraft ca rollover`: the current CA becomes the previous one (`pki/previous-ca.crt`, its
 * device certificates still accepted while it is valid) and the prepared next CA (or, without
 * one, a new CA) becomes the current one (`pki/ca.crt`, `pki/ca.key`), which issues everything
 * from the next start on. The old private key is kept as `pki/previous-ca.key` (0600) for one
 * use only, signing the previous CA's CRL (pki/revocation-list.ts): OpenSSL's CRL check, an
 * external Mosquitto's `crlfile`, refuses every certificate of a CA that has no CRL. Nothing
 * else reads it; `dropPreviousCa` deletes it (until 2026-12-06 the rollover deleted it at
 * once, and no CRL could be made during a transition). CONFLICT while a previous CA is still valid: a second rollover would drop
 * it, and with it every device not yet moved off it (drop it first: `dropPreviousCa`).
 */
export async function rolloverCa(dataDir: string, name?: string, nowMs = Date.now()): Promise<Rollover> {
  const p = caPaths(dataDir);
  // a rollover stopped between its renames, run again: loadCa finishes it, and that is this
  // run's work (it would otherwise refuse itself, a previous CA being trusted by then, and send
  // the operator to drop-previous, which locks out every device: review)
  const stopped = await stoppedBetweenRenames(p);
  const ca = await loadCa(dataDir);
  if (stopped && ca) {
    return { certificate: ca.certificate, notAfter: ca.notAfter, previousNotAfter: ca.previousNotAfter ?? ca.notAfter, prepared: true, resumed: true };
  }
  if (!ca) throw new UpdraftError('NOT_FOUND', `there is no CA in ${p.dir} to replace; make one: updraft ca init`);
  // a previous CA that is the current one is what a rollover stopped after its first step left
  if (ca.trustsPrevious(nowMs) && ca.previousCertificate !== ca.certificate) {
    throw new UpdraftError('CONFLICT', `the previous CA (${p.previous}) is still trusted, until ${new Date(ca.previousNotAfter!).toISOString()}: a second rollover would drop it and lock out the devices not yet moved off it; once none needs it, remove it with updraft ca drop-previous`);
  }
  let next: { certPem: string; keyPem: string; prepared: boolean };
  const [nextCert, nextKey] = [await readOptional(p.nextCert), await readOptional(p.nextKey)];
  if (nextCert !== undefined && nextKey !== undefined) {
    if (!new X509Certificate(nextCert).checkPrivateKey(createPrivateKey(nextKey))) throw new UpdraftError('CONFIG', `${p.nextKey} is not the private key of ${p.nextCert}`);
    if (name !== undefined && name !== commonNameOf(nextCert)) throw new UpdraftError('BAD_REQUEST', `the prepared next CA is named "${commonNameOf(nextCert)}"; --name is for a CA made now (drop it, or remove ${p.nextCert} and ${p.nextKey} to make another)`);
    next = { certPem: nextCert, keyPem: nextKey, prepared: true };
  } else {
    if (nextCert !== undefined || nextKey !== undefined) throw new UpdraftError('CONFIG', `only one of ${p.nextCert} and ${p.nextKey} exists: restore the other, or remove it to make a new CA`);
    next = { ...(await makeCa(successorName(ca.certificate, name, nowMs), ca.certificate)), prepared: false };
    // written as a prepared CA first (key, then certificate): the switch below is then the same
    // for both, and a stop during it leaves the new CA on disk, never only in this process
    await writeFileAtomic(p.nextKey, next.keyPem, 0o600);
    await writeFileAtomic(p.nextCert, next.certPem, 0o644);
  }
  // previous first, then the key and the certificate renamed into place, each whole, key first.
  // A stop after any step leaves a pki/ that loads: the old CA still current (with itself as
  // previous), the new key beside the old certificate with the new one still next-ca.crt (loadCa
  // finishes that: finishRollover), or the new CA with the old as previous
  await writeFileAtomic(p.previous, ca.certificate, 0o644);
  await writeFileAtomic(p.previousKey, await readFile(p.key, 'utf8'), 0o600);
  await rename(p.nextKey, p.key);
  await rename(p.nextCert, p.cert);
  return { certificate: next.certPem, notAfter: Date.parse(new X509Certificate(next.certPem).validTo), previousNotAfter: ca.notAfter, prepared: next.prepared };
}

/**
 * `updraft ca drop-previous`: ends a rollover (the previous CA's certificates are refused from
 * the next start); false when there was none. The certificate is kept as
 * `pki/previous-ca.crt.dropped` (replacing an earlier drop's), which nothing reads: it holds
 * no secret, and renaming it back undoes a drop made too early. Deleting it left the data
 * directory with no copy of the old CA (QA of the CA rollover, 2026-12-06). Its key
 * (`pki/previous-ca.key`, kept for its CRL) goes aside with it, as `pki/previous-ca.key.dropped`
 * (mode 0600, replacing an earlier drop's): an undo moves both back, and the previous CA's
 * CRL can be signed again. Deleted, an undone drop got no crlfile, so an external Mosquitto
 * admitted deleted devices' certificates again until the next drop (review of fe81e0f). Where
 * the rollover kept no key, an earlier drop's is removed: it is another CA's.
 */
export async function dropPreviousCa(dataDir: string): Promise<boolean> {
  const p = caPaths(dataDir);
  let dropped = true;
  try {
    await rename(p.previous, p.dropped);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    dropped = false;
  }
  // the key only with its certificate: a key left without one (a certificate removed by hand,
  // a crash between the renames) stays where it is rather than replace the earlier drop's
  // (review of 5cf113c: an undo then paired a certificate with another CA's key)
  if (!dropped) return false;
  try {
    await rename(p.previousKey, p.droppedKey);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    await rm(p.droppedKey, { force: true });
  }
  await syncDir(p.dir);
  return true;
}
