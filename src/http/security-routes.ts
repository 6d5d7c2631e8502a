/**
 * Operator API for device certificates and keys (`/api/v1/...`, behind the operator token):
 * issue a device's client certificate from Updraft's CA, show the public signing key, and
 * rotate or retire URL signing keys without a restart.
 */
import type { SigningKey } from '../artifacts/url-signer.ts';
import { listKeyRing, rotateKeyRing } from '../artifacts/key-ring.ts';
import { UpdraftError } from '../errors.ts';
import type { CertificateAuthority } from '../pki/certificate-authority.ts';
import { isValidId } from '../protocol/topics.ts';
import type { DeviceRegistry } from '../registry/device-registry.ts';
import type { SoftwareSigningKey } from '../signing/signing-key.ts';
import type { Logger } from '../util/logger.ts';
import { readJson, sendJson } from './respond.ts';
import type { Router } from './router.ts';

/** What the security routes need. */
export interface SecurityRouteDeps {
  dataDir: string;
  registry: DeviceRegistry;
  ca: CertificateAuthority;
  signingKey: SoftwareSigningKey;
  /** The live URL key ring (changed in place by rotation). */
  urlKeys: SigningKey[];
  logger: Logger;
}

/** Adds the routes to `router`. */
export function addSecurityRoutes(router: Router, deps: SecurityRouteDeps): void {
  router.add('POST', '/api/v1/devices/:id/certificate', async ({ res, params }) => {
    const deviceId = params.id!;
    if (!isValidId(deviceId)) throw new UpdraftError('BAD_REQUEST', `"${deviceId}" is not a valid device id`);
    const device = await deps.registry.get(deviceId);
    if (device.revoked) throw new UpdraftError('CONFLICT', `device ${deviceId} is revoked; rotate its secret first to re-admit it`);
    const issued = await deps.ca.issueDeviceCertificate(deviceId);
    deps.logger.info('device certificate issued', { deviceId });
    sendJson(res, 201, { deviceId, certificate: issued.certificate, privateKey: issued.privateKey, ca: deps.ca.certificate });
  });

  router.add('GET', '/api/v1/keys', async ({ res }) => {
    sendJson(res, 200, {
      signing: { keyId: deps.signingKey.keyId, algorithm: 'Ed25519', publicKey: deps.signingKey.publicKeyPem },
      url: await listKeyRing(deps.dataDir),
      ca: deps.ca.certificate,
    });
  });

  router.add('POST', '/api/v1/keys/url/rotate', async ({ req, res }) => {
    const body = await readJson(req);
    const retire = body.retire;
    if (retire !== undefined && typeof retire !== 'string') throw new UpdraftError('BAD_REQUEST', 'retire must be a key id');
    const keys = await rotateKeyRing(deps.dataDir, { add: true, ring: deps.urlKeys, ...(retire !== undefined ? { retire } : {}) });
    deps.logger.info('URL signing key rotated', { active: keys[0]?.kid, ...(retire !== undefined ? { retired: retire } : {}) });
    sendJson(res, 200, { keys });
  });

  router.add('POST', '/api/v1/keys/url/retire', async ({ req, res }) => {
    const body = await readJson(req);
    if (typeof body.kid !== 'string') throw new UpdraftError('BAD_REQUEST', 'kid (the key id to retire) is required');
    const keys = await rotateKeyRing(deps.dataDir, { retire: body.kid, ring: deps.urlKeys });
    deps.logger.info('URL signing key retired', { retired: body.kid });
    sendJson(res, 200, { keys });
  });
}
