/**
 * A private Mosquitto for the AWS compatibility tests: a device listener with TLS that
 * requires a client certificate from Updraft's CA (the certificate CN becomes the user name,
 * so the generated ACL's `%u` patterns hold for `$aws/things/{CN}/...`), and a service
 * listener for Updraft (user `operator`). MQTT 5 devices reach Updraft this way, since the
 * embedded broker speaks 3.1.1 only.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { mosquittoAcl, mosquittoPasswordLine } from '../../src/broker/mosquitto-config.ts';
import type { CertificateAuthority } from '../../src/pki/certificate-authority.ts';
import { freePort } from '../helpers/free-port.ts';

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
  const child: ChildProcess = spawn(bin, ['-c', path.join(dir, 'mosquitto.conf')], { stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  child.stdout!.on('data', (d) => (log += d));
  child.stderr!.on('data', (d) => (log += d));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const deadline = Date.now() + 20_000;
  for (const port of [devicePort, servicePort]) {
    while (!(await accepts(port))) {
      if (child.exitCode !== null || Date.now() > deadline) {
        child.kill('SIGKILL');
        await rm(dir, { recursive: true, force: true });
        throw new Error(`mosquitto did not start: ${log.trim().split('\n').slice(-3).join(' ')}`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  return {
    deviceHost: '127.0.0.1',
    devicePort,
    serviceUrl: `mqtt://127.0.0.1:${servicePort}`,
    async stop() {
      child.kill('SIGTERM');
      await exited;
      await rm(dir, { recursive: true, force: true });
    },
  };
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.once('connect', () => (s.destroy(), resolve(true)));
    s.once('error', () => resolve(false));
  });
}
