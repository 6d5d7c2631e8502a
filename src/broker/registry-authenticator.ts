/**
 * The default authenticator: deny by default (DESIGN.md §6). A device connects with its
 * device id as client id, and as user name if it sends one, and its secret as password;
 * unknown, revoked and wrong-secret devices are refused at CONNECT. `operator` with the
 * operator token is the operator identity.
 */
import { thingsFromAttributes } from '../aws/thing-access.ts';
import { deviceSecretMatches } from '../registry/device-secret.ts';
import type { DeviceRecord, StateStore } from '../store/state-store.ts';
import type { Logger } from '../util/logger.ts';
import { OPERATOR_USERNAME, secretMatches, type Authenticator, type ConnectCredentials } from './authenticator.ts';
import type { Sender } from './message-bus.ts';

/** Authenticates devices against the registry. */
export class RegistryAuthenticator implements Authenticator {
  private readonly deps: { store: StateStore; operatorToken: string; logger: Logger };
  private operatorToken: string;

  constructor(deps: { store: StateStore; operatorToken: string; logger: Logger }) {
    this.deps = deps;
    this.operatorToken = deps.operatorToken;
  }

  /** Replaces the operator token: the next operator CONNECT must present the new one. */
  setOperatorToken(token: string): void {
    this.operatorToken = token;
  }

  async authenticate(c: ConnectCredentials): Promise<Sender | undefined> {
    if (c.username === OPERATOR_USERNAME) {
      return secretMatches(c.password, this.operatorToken) ? { kind: 'operator', id: OPERATOR_USERNAME } : undefined;
    }
    const refuse = (reason: string) => {
      this.deps.logger.warn('device refused at CONNECT', { clientId: c.clientId, reason });
      return undefined;
    };
    if (c.certificateCommonName !== undefined) return this.byCertificate(c, c.certificateCommonName);
    if (c.username !== undefined && c.username !== c.clientId) return refuse('user name differs from client id');
    const device = await this.deps.store.getDevice(c.clientId);
    if (!device) return refuse('unknown device');
    if (device.revoked) return refuse('device revoked');
    if (!deviceSecretMatches(c.password, device.secretHash)) return refuse('wrong secret');
    return deviceSender(device);
  }

  /**
   * MQTT over TLS with a client certificate the TLS layer verified against Updraft's CA: the
   * device id is the certificate's CN, so no secret is needed, but the client id (and the
   * user name, if sent) must be that id, and the device must be registered and not revoked.
   */
  private async byCertificate(c: ConnectCredentials, cn: string): Promise<Sender | undefined> {
    const refuse = (reason: string) => {
      this.deps.logger.warn('device refused at CONNECT', { clientId: c.clientId, certificate: cn, reason });
      return undefined;
    };
    if (c.clientId !== cn) return refuse('client id differs from the certificate CN');
    // the AWS IoT Device SDKs send their metrics as a query string in the user name
    // (`?SDK=...&Version=...`), which AWS IoT ignores with certificates: so do we (issue 9)
    const username = c.username?.split('?')[0];
    if (username !== undefined && username !== '' && username !== cn) return refuse('user name differs from the certificate CN');
    const device = await this.deps.store.getDevice(cn);
    if (!device) return refuse('unknown device');
    if (device.revoked) return refuse('device revoked');
    // issued for an earlier device of this id, deleted since (updraft device delete): a
    // certificate is for the registration it was issued to, never for one made after it (a
    // certificate's times are whole seconds: one issued in the second of the registration passes)
    if (c.certificateIssuedAt !== undefined && c.certificateIssuedAt + 1000 <= device.createdAt) return refuse('certificate issued before this device was registered');
    return deviceSender(device);
  }
}

/** A device's identity for its connection: its id, and the AWS things it may act for (issue 9). */
function deviceSender(device: DeviceRecord): Sender {
  const things = thingsFromAttributes(device.attributes);
  return things.length > 0 ? { kind: 'device', id: device.deviceId, things } : { kind: 'device', id: device.deviceId };
}
