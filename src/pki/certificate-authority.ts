/**
 * Updraft's own certificate authority (issue 5, device identity): issues X.509 client
 * certificates whose subject CN is the device id, for MQTT over TLS with mutual
 * authentication, and server certificates for the MQTTS and HTTPS listeners.
 *
 * Kept in `<dataDir>/pki/`: `ca.crt` (give it to devices) and `ca.key` (mode 0600, never
 * leaves the server). Keys are made by node:crypto (RSA 2048: every TLS stack of every
 * device speaks it); node:crypto cannot build certificates, so node-forge assembles and
 * signs them. Nothing here verifies certificates: Node's TLS (OpenSSL) does that.
 */
import { X509Certificate, createPrivateKey, generateKeyPair, randomBytes, sign, type KeyObject } from 'node:crypto';
import { mkdir, readFile } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { promisify } from 'node:util';
import forge from 'node-forge';
import { UpdraftError } from '../errors.ts';
import { isValidId } from '../protocol/topics.ts';
import { writeFileAtomic } from '../util/atomic-file.ts';

const generateKeyPairAsync = promisify(generateKeyPair);

/** A certificate and its private key, both PEM. */
export interface IssuedCertificate {
  certificate: string;
  privateKey: string;
}

/** Where the CA lives under a data directory. */
export function caPaths(dataDir: string): { dir: string; cert: string; key: string } {
  const dir = path.join(path.resolve(dataDir), 'pki');
  return { dir, cert: path.join(dir, 'ca.crt'), key: path.join(dir, 'ca.key') };
}

const DAY_MS = 86_400_000;
/** Clock skew between server and devices tolerated at the start of a validity period. */
export const SKEW_MS = 5 * 60_000;

async function newRsaKey(): Promise<{ privateKey: forge.pki.rsa.PrivateKey; publicKey: forge.pki.rsa.PublicKey; pem: string }> {
  const { privateKey, publicKey } = await generateKeyPairAsync('rsa', {
    modulusLength: 2048,
    publicKeyEncoding: { type: 'spki', format: 'pem' },
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
  });
  return { privateKey: forge.pki.privateKeyFromPem(privateKey) as forge.pki.rsa.PrivateKey, publicKey: forge.pki.publicKeyFromPem(publicKey) as forge.pki.rsa.PublicKey, pem: privateKey };
}

/**
 * Signs `cert` (SHA-256 with RSA) as forge's `cert.sign` does, but with node:crypto: forge
 * assembles the to-be-signed part, OpenSSL signs it. forge's own RSA, in JavaScript, took
 * about 30 ms of the server's one thread per certificate; this, about 1 ms. A fleet
 * renewing its certificates must not stall the server's other work.
 */
function signNatively(cert: forge.pki.Certificate, key: KeyObject): void {
  const withSignature = cert as forge.pki.Certificate & { md: forge.md.MessageDigest; tbsCertificate: forge.asn1.Asn1 };
  withSignature.md = forge.md.sha256.create();
  const oid = forge.pki.oids['sha256WithRSAEncryption']!;
  cert.signatureOid = oid;
  cert.siginfo.algorithmOid = oid;
  // in forge since 0.7, used by its own cert.sign; not in its type definitions
  withSignature.tbsCertificate = (forge.pki as unknown as { getTBSCertificate(c: forge.pki.Certificate): forge.asn1.Asn1 }).getTBSCertificate(cert);
  const tbs = Buffer.from(forge.asn1.toDer(withSignature.tbsCertificate).getBytes(), 'binary');
  cert.signature = sign('sha256', tbs, key).toString('binary');
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
function validity(cert: forge.pki.Certificate, days: number, capMs = Infinity): void {
  const now = Date.now();
  cert.validity.notBefore = new Date(now - SKEW_MS);
  cert.validity.notAfter = new Date(Math.min(now + days * DAY_MS, capMs));
}

/** The CA: its certificate (PEM) and the means to issue certificates. */
export class CertificateAuthority {
  /** PEM of the CA certificate: what devices and clients trust. */
  readonly certificate: string;
  private readonly cert: forge.pki.Certificate;
  private readonly x509: X509Certificate;
  private readonly nativeKey: KeyObject;

  /** Only assigns; use `loadCa`, `createCa` or `loadOrCreateCa`. */
  constructor(certPem: string, keyPem: string) {
    this.certificate = certPem;
    this.cert = forge.pki.certificateFromPem(certPem);
    this.x509 = new X509Certificate(certPem);
    this.nativeKey = createPrivateKey(keyPem);
  }

  /** When the CA certificate expires (ms since the epoch): no certificate it issues is valid past it. */
  get notAfter(): number {
    return Date.parse(this.x509.validTo);
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
    return this.issue([{ name: 'commonName', value: deviceId }, { name: 'organizationName', value: 'Updraft device' }], days, [
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
  deviceCertificateKey(certificatePem: string, deviceId: string, nowMs = Date.now()): { key: KeyObject; issuedAt: number; expiresAt: number } {
    let x509: X509Certificate;
    try {
      x509 = new X509Certificate(certificatePem);
    } catch {
      throw new UpdraftError('BAD_REQUEST', 'certificate is not a PEM X.509 certificate');
    }
    if (!x509.checkIssued(this.x509) || !x509.verify(this.x509.publicKey)) throw new UpdraftError('FORBIDDEN', "the current certificate was not issued by this server's CA");
    const cn = /^CN=(.*)$/m.exec(x509.subject)?.[1];
    if (cn !== deviceId) throw new UpdraftError('FORBIDDEN', `the current certificate is ${cn === undefined ? 'no device' : `device ${cn}`}'s, not ${deviceId}'s`);
    if (Date.parse(x509.validTo) + SKEW_MS < nowMs) throw new UpdraftError('FORBIDDEN', `the current certificate expired at ${new Date(x509.validTo).toISOString()}: a device whose certificate expired is given a new one by the operator (updraft device cert)`);
    if (Date.parse(x509.validFrom) - SKEW_MS > nowMs) throw new UpdraftError('FORBIDDEN', 'the current certificate is not valid yet');
    return { key: x509.publicKey, issuedAt: Date.parse(x509.validFrom) + SKEW_MS, expiresAt: Date.parse(x509.validTo) };
  }

  /**
   * A client certificate for `deviceId` over the key of `csrPem` (PKCS #10), which the device
   * made and keeps: the request must be signed by that key (it holds it), name the device as
   * its CN, and carry an RSA key of at least 2048 bits. BAD_REQUEST naming what is wrong.
   */
  issueDeviceCertificateFromRequest(deviceId: string, csrPem: string, days = 730): { certificate: string; notAfter: number } {
    if (!isValidId(deviceId)) throw new UpdraftError('BAD_REQUEST', `"${deviceId}" is not a valid device id`);
    let csr: forge.pki.CertificateSigningRequest;
    try {
      csr = forge.pki.certificationRequestFromPem(csrPem);
    } catch (err) {
      throw new UpdraftError('BAD_REQUEST', `csr is not a PEM certificate signing request with an RSA key: ${(err as Error).message}`);
    }
    let signed = false;
    try {
      signed = csr.verify();
    } catch {
      signed = false;
    }
    if (!signed) throw new UpdraftError('BAD_REQUEST', 'the certificate signing request is not signed by its own key');
    const cn = csr.subject.getField('CN')?.value as string | undefined;
    if (cn !== deviceId) throw new UpdraftError('BAD_REQUEST', `the certificate signing request names ${cn === undefined ? 'no device' : `device ${cn}`}, not ${deviceId}`);
    const publicKey = csr.publicKey as forge.pki.rsa.PublicKey | null;
    if (!publicKey || publicKey.n.bitLength() < 2048) throw new UpdraftError('BAD_REQUEST', 'the certificate signing request needs an RSA key of at least 2048 bits');
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
    signNatively(cert, this.nativeKey);
    return { certificate: forge.pki.certificateToPem(cert), notAfter: Math.floor(cert.validity.notAfter.getTime() / 1000) };
  }

  /** A server certificate valid for `hosts` (DNS names and IP addresses), `days` but not past the CA. */
  async issueServerCertificate(hosts: string[], days = 730): Promise<IssuedCertificate> {
    if (hosts.length === 0) throw new UpdraftError('CONFIG', 'a server certificate needs at least one host name');
    const altNames = hosts.map((h) => (net.isIP(h) ? { type: 7, ip: h } : { type: 2, value: h }));
    return this.issue([{ name: 'commonName', value: hosts[0]! }, { name: 'organizationName', value: 'Updraft server' }], days, [
      { name: 'keyUsage', critical: true, digitalSignature: true, keyEncipherment: true },
      { name: 'extKeyUsage', serverAuth: true },
      { name: 'subjectAltName', altNames },
    ]);
  }

  private async issue(subject: forge.pki.CertificateField[], days: number, extensions: object[]): Promise<IssuedCertificate> {
    const keys = await newRsaKey();
    const cert = forge.pki.createCertificate();
    cert.publicKey = keys.publicKey;
    cert.serialNumber = serial();
    validity(cert, days, this.capMs());
    cert.setSubject(subject);
    cert.setIssuer(this.cert.subject.attributes);
    cert.setExtensions([{ name: 'basicConstraints', cA: false, critical: true }, ...extensions, { name: 'subjectKeyIdentifier' }]);
    signNatively(cert, this.nativeKey);
    return { certificate: forge.pki.certificateToPem(cert), privateKey: keys.pem };
  }
}

/** Loads the CA of `dataDir`, or undefined when there is none. */
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
  return new CertificateAuthority(cert, key);
}

/** Creates the CA of `dataDir`; CONFLICT when one exists (re-creating it would orphan every device certificate). */
export async function createCa(dataDir: string, commonName = 'Updraft device CA'): Promise<CertificateAuthority> {
  if (await loadCa(dataDir)) throw new UpdraftError('CONFLICT', `a CA already exists in ${caPaths(dataDir).dir}; every device certificate depends on it, so it is kept`);
  const p = caPaths(dataDir);
  const keys = await newRsaKey();
  const cert = forge.pki.createCertificate();
  cert.publicKey = keys.publicKey;
  cert.serialNumber = serial();
  validity(cert, 3650);
  const name = [{ name: 'commonName', value: commonName }, { name: 'organizationName', value: 'Updraft' }];
  cert.setSubject(name);
  cert.setIssuer(name);
  cert.setExtensions([
    { name: 'basicConstraints', cA: true, pathLenConstraint: 0, critical: true },
    { name: 'keyUsage', critical: true, keyCertSign: true, cRLSign: true },
    { name: 'subjectKeyIdentifier' },
  ]);
  signNatively(cert, createPrivateKey(keys.pem));
  const certPem = forge.pki.certificateToPem(cert);
  await mkdir(p.dir, { recursive: true, mode: 0o700 });
  await writeFileAtomic(p.key, keys.pem, 0o600);
  await writeFileAtomic(p.cert, certPem, 0o644);
  return new CertificateAuthority(certPem, keys.pem);
}

/** The CA of `dataDir`, created on first use. */
export async function loadOrCreateCa(dataDir: string): Promise<{ ca: CertificateAuthority; created: boolean }> {
  const ca = await loadCa(dataDir);
  return ca ? { ca, created: false } : { ca: await createCa(dataDir), created: true };
}
