/**
 * Operator API for device certificates and keys (`/api/v1/...`, behind the operator token):
 * issue a device's client certificate from Updraft's CA, show the public signing key (and the
 * root's certificate of it), install a new certificate of it, and rotate or retire URL
 * signing keys without a restart.
 */
import type { SigningKey } from '../artifacts/url-signer.ts';
import { listKeyRing, rotateKeyRing } from '../artifacts/key-ring.ts';
import { UpdraftError } from '../errors.ts';
import type { CertificateAuthority } from '../pki/certificate-authority.ts';
import { droppedCaSubject, rootKey } from '../health/key-facts.ts';
import { recordIssued } from '../pki/revocation-list.ts';
import { caSubject } from '../protocol/certificate-issuer.ts';
import { isValidId } from '../protocol/topics.ts';
import type { DeviceRegistry } from '../registry/device-registry.ts';
import type { StateStore } from '../store/state-store.ts';
import { parseKeyCertificate } from '../protocol/key-certificate.ts';
import { parseRootRotations } from '../protocol/root-rotation.ts';
import type { CertificateExpiryWatch } from '../signing/certificate-expiry.ts';
import type { ManifestSigner } from '../signing/manifest-signer.ts';
import { installKeyCertificate, type InstalledKeyCertificate } from '../signing/root-key.ts';
import { keyIdOf, parsePublicKey, type SoftwareSigningKey } from '../signing/signing-key.ts';
import type { Logger } from '../util/logger.ts';
import { readJson, sendJson } from './respond.ts';
import type { Router } from './router.ts';
import { refuseUnknownFields } from '../protocol/known-fields.ts';

/** What the security routes need. */
export interface SecurityRouteDeps {
  dataDir: string;
  registry: DeviceRegistry;
  /** Where each issued device certificate is recorded before it is handed out (its serial, for the CRL: pki/revocation-list.ts). */
  store: Pick<StateStore, 'recordDeviceCertificate' | 'pruneExpiredCertificates'>;
  ca: CertificateAuthority;
  signingKey: SoftwareSigningKey;
  /** Sends the signing key's certificate with every command; given a new one when one is installed. */
  manifests: ManifestSigner;
  /** The live URL key ring (changed in place by rotation). */
  urlKeys: SigningKey[];
  /**
   * True on a store other instances may share (PostgreSQL): the URL key ring is per data
   * directory, so a rotation here must be copied to them (docs/deployment.md), and the answer
   * says so.
   */
  sharedStore?: boolean;
  logger: Logger;
  /** After a certificate is installed here: share it with the other instances. */
  onCertificateInstalled?: (installed: InstalledKeyCertificate) => Promise<void>;
  /** Says a certificate installed here that expires within 30 days (logs, once a day at most). */
  certificateExpiry: CertificateExpiryWatch;
  /** After this instance's URL key ring changed (rotated or a key retired): recorded for the other instances on the store. */
  onUrlKeysChanged?: () => Promise<void>;
}

/** Adds the routes to `router`. */
export function addSecurityRoutes(router: Router, deps: SecurityRouteDeps): void {
  // a certificate and a key made here, or, with {csr}, a certificate for a key the device made
  // and keeps (a secure element, a factory line): then no private key travels at all
  router.add('POST', '/api/v1/devices/:id/certificate', async ({ req, res, params }) => {
    const deviceId = params.id!;
    if (!isValidId(deviceId)) throw new UpdraftError('BAD_REQUEST', `"${deviceId}" is not a valid device id`);
    // a body is optional: the call without one (the CLI's, scripts') has the key made here. One
    // sent is read and checked whatever its content type: it was dropped unless labelled JSON,
    // so {"csr"} sent by curl -d (form-urlencoded) had a private key made here and sent back
    const body = await readJson(req, 16_384, { optional: true });
    // a misspelt "csr" must not be dropped: the key would be made here and sent, where the device meant to keep its own
    refuseUnknownFields(body, ['csr']);
    if (body.csr !== undefined && typeof body.csr !== 'string') throw new UpdraftError('BAD_REQUEST', 'csr must be the PEM text of a certificate signing request');
    const device = await deps.registry.get(deviceId);
    // only reinstating lifts a revocation (a new secret does not: registry rotateSecret)
    if (device.revoked) throw new UpdraftError('CONFLICT', `device ${deviceId} is revoked; reinstate it first (updraft device reinstate ${deviceId}): a new secret does not lift a revocation`);
    if (typeof body.csr === 'string') {
      const issued = await deps.ca.issueDeviceCertificateFromRequest(deviceId, body.csr);
      await recordIssued(deps.store, deviceId, issued.certificate, deps.ca.certificate, deps.logger);
      deps.logger.info('device certificate issued for its own key', { deviceId });
      sendJson(res, 201, { deviceId, certificate: issued.certificate, ca: deps.ca.certificate });
      return;
    }
    const issued = await deps.ca.issueDeviceCertificate(deviceId);
    await recordIssued(deps.store, deviceId, issued.certificate, deps.ca.certificate, deps.logger);
    deps.logger.info('device certificate issued', { deviceId });
    sendJson(res, 201, { deviceId, certificate: issued.certificate, privateKey: issued.privateKey, ca: deps.ca.certificate });
  });

  router.add('GET', '/api/v1/keys', async ({ res }) => {
    const certificate = deps.manifests.certificate;
    sendJson(res, 200, {
      signing: { keyId: deps.signingKey.keyId, algorithm: 'Ed25519', publicKey: deps.signingKey.publicKeyPem, certificate: certificate ?? null },
      root: certificate ? { ...(await rootKey(deps.dataDir)), rotations: deps.manifests.rootRotations } : null,
      url: await listKeyRing(deps.dataDir),
      ca: deps.ca.certificate,
      // the CAs' subjects as agents report an issuer (reported.agent.certificateIssuer), so that a
      // client without an X.509 parser (the dashboard) can ask the fleet who is on which
      caSubject: caSubject(deps.ca.certificate),
      // during a CA rollover, the CA it replaced (pki/previous-ca.crt): doctor counts the devices still on it
      previousCa: deps.ca.previousCertificate ?? null,
      previousCaSubject: deps.ca.previousCertificate ? caSubject(deps.ca.previousCertificate) : null,
      // the CA the last `ca drop-previous` removed (pki/previous-ca.crt.dropped): doctor names
      // the devices still reporting a certificate of it, which the server refuses since
      droppedCaSubject: await droppedCaSubject(deps.dataDir),
    });
  });

  // one installation at a time: each checks its serial against the one installed before it
  let installing: Promise<unknown> = Promise.resolve();
  router.add('PUT', '/api/v1/keys/signing/certificate', async ({ req, res, audit }) => {
    const body = await readJson(req);
    refuseUnknownFields(body, ['certificate', 'rootPublicKey', 'rootRotations']);
    const certificate = parseKeyCertificate(body.certificate, 'certificate');
    const rootPublicKey = body.rootPublicKey;
    if (rootPublicKey !== undefined) {
      try {
        if (typeof rootPublicKey !== 'string') throw new Error('not a string');
        parsePublicKey(rootPublicKey);
      } catch (err) {
        throw new UpdraftError('BAD_REQUEST', `rootPublicKey must be an Ed25519 public key in PEM: ${(err as Error).message}`);
      }
    }
    // the rotations from the installed root to the certificate's, when the root is replaced (updraft keys root-rotate)
    const rootRotations = body.rootRotations === undefined ? undefined : parseRootRotations(body.rootRotations);
    const run = installing.then(() =>
      installKeyCertificate(deps.dataDir, deps.signingKey, certificate, { ...(typeof rootPublicKey === 'string' ? { rootPublicKeyPem: rootPublicKey } : {}), ...(rootRotations ? { rootRotations } : {}) }),
    );
    installing = run.catch(() => {});
    const installed = await run;
    deps.manifests.useCertificate(installed);
    Object.assign(audit, { keyId: certificate.keyId, serial: certificate.serial, rootKeyId: certificate.rootKeyId });
    if (installed.replacedRootKeyId !== undefined) {
      deps.logger.warn('the offline root was replaced: devices that trusted the old one take the new one with their next command, and refuse the old one from then on', { previousRootKeyId: installed.replacedRootKeyId, rootKeyId: installed.certificate.rootKeyId });
    }
    // to the other instances on this store (signing/shared-certificate.ts). Installed here either
    // way: a store that does not take it now gets it at this instance's next comparison (30 s)
    await deps.onCertificateInstalled?.(installed).catch((err: unknown) => deps.logger.warn('certificate installed on this instance, but not yet shared with the others: the store did not take it; it is shared at the next comparison, within 30 s', { error: (err as Error).message }));
    deps.logger.info('software signing key certificate installed: update commands carry it from now on', { keyId: certificate.keyId, serial: certificate.serial, rootKeyId: certificate.rootKeyId });
    deps.certificateExpiry.check();
    sendJson(res, 200, { certificate: installed.certificate, root: { keyId: keyIdOf(parsePublicKey(installed.rootPublicKeyPem)), publicKey: installed.rootPublicKeyPem, rotations: installed.rootRotations, replaced: installed.replacedRootKeyId ?? null } });
  });

  router.add('POST', '/api/v1/keys/url/rotate', async ({ req, res, audit }) => {
    const body = await readJson(req);
    // a misspelt field must not be dropped: {"activateIn": 3600} put a key to signing at once
    refuseUnknownFields(body, ['retire', 'activateInSeconds']);
    const retire = body.retire;
    const delay = body.activateInSeconds;
    const problems: string[] = [];
    if (retire !== undefined && typeof retire !== 'string') problems.push('retire must be a key id');
    if (delay !== undefined && !(typeof delay === 'number' && Number.isSafeInteger(delay) && delay >= 0 && delay <= 30 * 86_400)) problems.push('activateInSeconds must be a whole number of seconds from 0 to 2592000 (30 days)');
    if (problems.length > 0) throw new UpdraftError('BAD_REQUEST', problems.join('; '));
    const activateAt = typeof delay === 'number' && delay > 0 ? Date.now() + delay * 1000 : undefined;
    const keys = await rotateKeyRing(deps.dataDir, { add: true, ring: deps.urlKeys, ...(activateAt !== undefined ? { activateAt } : {}), ...(typeof retire === 'string' ? { retire } : {}) });
    Object.assign(audit, keys[0] ? { kid: keys[0].kid } : {}, typeof retire === 'string' ? { retired: retire } : {});
    deps.logger.info('URL signing key rotated', { added: keys[0]?.kid, ...(keys[0]?.activeFrom ? { signsFrom: keys[0].activeFrom } : {}), ...(typeof retire === 'string' ? { retired: retire } : {}) });
    await urlKeysChanged(deps);
    // the key ring is per data directory: on a shared database, the other instances refuse what this key signs until they have it
    const warning = deps.sharedStore
      ? `this instance's key ring changed, not the others': instances on one database verify each other's URLs only with the same keys/url-signing.json. Copy it to every instance (and restart them)${keys[0]?.activeFrom ? ` before ${keys[0].activeFrom}, when the new key starts signing` : ': the new key signs at once, so stage the next one (--activate-in 1h) or rotate offline'} (docs/deployment.md)`
      : undefined;
    sendJson(res, 200, { keys, ...(warning ? { warning } : {}) });
  });

  router.add('POST', '/api/v1/keys/url/retire', async ({ req, res, audit }) => {
    const body = await readJson(req);
    refuseUnknownFields(body, ['kid']);
    if (typeof body.kid !== 'string') throw new UpdraftError('BAD_REQUEST', 'kid (the key id to retire) is required');
    const keys = await rotateKeyRing(deps.dataDir, { retire: body.kid, ring: deps.urlKeys });
    audit.retired = body.kid;
    deps.logger.info('URL signing key retired', { retired: body.kid });
    await urlKeysChanged(deps);
    sendJson(res, 200, { keys });
  });
}

/**
 * A changed ring is recorded at once as the one every instance on the store must hold, so the
 * others are told at their next comparison and an instance started with the new file is let
 * in; left to this instance's own next comparison (30 s), one started meanwhile was refused.
 */
async function urlKeysChanged(deps: SecurityRouteDeps): Promise<void> {
  await deps.onUrlKeysChanged?.().catch((err: unknown) => deps.logger.warn('the new URL key ring is not recorded in the store yet: it is at the next comparison, within 30 s', { error: (err as Error).message }));
}
