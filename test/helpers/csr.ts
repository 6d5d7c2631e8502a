/**
 * A PKCS #10 certificate signing request for a fresh RSA key, made with node-forge as the
 * agent makes its renewal requests (agent/certificate-renewer.ts): for the tests of the CA,
 * the renewal over MQTT and the certificate routes.
 */
import { generateKeyPairSync } from 'node:crypto';
import forge from 'node-forge';

/** A CSR naming `cn` (PEM) and its private key (PKCS #8 PEM); `bits` of RSA, signed with `digest`. */
export function forgeCsr(cn: string, options: { bits?: number; digest?: 'sha1' | 'sha256' } = {}): { csr: string; key: string } {
  const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: options.bits ?? 2048, publicKeyEncoding: { type: 'spki', format: 'pem' }, privateKeyEncoding: { type: 'pkcs8', format: 'pem' } });
  const csr = forge.pki.createCertificationRequest();
  csr.publicKey = forge.pki.publicKeyFromPem(publicKey);
  csr.setSubject([{ name: 'commonName', value: cn }]);
  csr.sign(forge.pki.privateKeyFromPem(privateKey) as forge.pki.rsa.PrivateKey, forge.md[options.digest ?? 'sha256'].create());
  return { csr: forge.pki.certificationRequestToPem(csr), key: privateKey };
}
