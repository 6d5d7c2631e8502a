/**
 * A private Mosquitto for the AWS compatibility tests: a device listener with TLS that
 * requires a client certificate from Updraft's CA (the certificate CN becomes the user name,
 * so the generated ACL's `%u` patterns hold for `$aws/things/{CN}/...`), and a service
 * listener for Updraft (user `operator`). MQTT 5 devices reach Updraft this way, since the
 * embedded broker speaks 3.1.1 only.
 */
import { chmod, mkdtemp, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { mosquittoAcl, mosquittoPasswordLine } from '../../src/broker/mosquitto-config.ts';
import type { CertificateAuthority } from '../../src/pki/certificate-authority.ts';
import { freePort } from '../helpers/free-port.ts';
import { runMosquitto } from '../helpers/mosquitto.ts';

/** A running Mosquitto with a TLS device listener. */
export interface TlsMosquitto {
  deviceHost: string;
  devicePort: number;
  serviceUrl: string;
  stop(): Promise<void>;
}

/** Starts Mosquitto; `ca` issues its server certificate and verifies device certificates. */
export async function startTlsMosquitto(bin: string, input: { ca: CertificateAuthority; operatorToken: string }): Promise<TlsMosquitto> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'updraft-aws-mosquitto-'));
  const devicePort = await freePort();
  const servicePort = await freePort();
  const server = await input.ca.issueServerCertificate(['127.0.0.1', 'localhost']);
  await writeFile(path.join(dir, 'ca.crt'), input.ca.certificate);
  await writeFile(path.join(dir, 'server.crt'), server.certificate);
  // a throw-away test key: mosquitto drops to its own user and must read it
  await writeFile(path.join(dir, 'server.key'), server.privateKey, { mode: 0o644 });
  await writeFile(path.join(dir, 'passwd'), mosquittoPasswordLine('operator', input.operatorToken) + '\n', { mode: 0o644 });
  await writeFile(path.join(dir, 'acl'), mosquittoAcl());
  await writeFile(
    path.join(dir, 'mosquitto.conf'),
    [
      'per_listener_settings true',
      `listener ${devicePort} 127.0.0.1`,
      `acl_file ${dir}/acl`,
      `cafile ${dir}/ca.crt`,
      `certfile ${dir}/server.crt`,
      `keyfile ${dir}/server.key`,
      'require_certificate true',
      'use_identity_as_username true',
      // as in the generated config: no device can take over another one's session
      'use_username_as_clientid true',
      'tls_version tlsv1.2',
      `listener ${servicePort} 127.0.0.1`,
      'allow_anonymous false',
      `password_file ${dir}/passwd`,
      `acl_file ${dir}/acl`,
      '',
    ].join('\n'),
  );
  await chmod(dir, 0o755);
  const proc = await runMosquitto(bin, dir, [devicePort, servicePort]);
  return {
    deviceHost: '127.0.0.1',
    devicePort,
    serviceUrl: `mqtt://127.0.0.1:${servicePort}`,
    stop: () => proc.stop(),
  };
}
