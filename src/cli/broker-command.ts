/**
 * `updraft broker mosquitto-config`: writes mosquitto.conf, passwd and acl for an external
 * Mosquitto 2 from the device registry (read through the API). The registry keeps each
 * secret's Mosquitto hash since it is issued (registration, rotation); devices registered
 * before that can be admitted with `--secrets` (lines `deviceId secret`) or by rotating
 * their secret. Those without either are listed; revoked ones are left out.
 */
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Command } from 'commander';
import { mosquittoAcl, mosquittoConf, mosquittoPasswd, parseSecrets, type RegisteredDevice } from '../broker/mosquitto-config.ts';
import { UpdraftError } from '../errors.ts';
import { ApiClient, type ApiOptions } from './api-client.ts';

interface Options extends ApiOptions {
  out: string;
  secrets?: string;
  deviceHost: string;
  devicePort: string;
  serviceHost: string;
  servicePort: string;
  tlsCert?: string;
  tlsKey?: string;
  tlsCa?: string;
}

/** Adds `broker mosquitto-config`. */
export function addBrokerCommands(program: Command): void {
  const broker = program.command('broker').description('configure an external MQTT broker');
  broker
    .command('mosquitto-config')
    .description('write mosquitto.conf, passwd and acl for Mosquitto 2 from the device registry')
    .requiredOption('--out <dir>', 'directory to write the three files into')
    .option('--secrets <file>', 'secrets of devices registered without a kept broker hash, one "deviceId secret" per line')
    .option('--device-host <host>', 'interface of the device listener', '0.0.0.0')
    .option('--device-port <port>', 'port of the device listener (8883 with TLS)', '1883')
    .option('--service-host <host>', 'interface of the listener for Updraft instances (keep it private)', '127.0.0.1')
    .option('--service-port <port>', 'port of the listener for Updraft instances', '1884')
    .option('--tls-cert <file>', 'server certificate (PEM) for the device listener')
    .option('--tls-key <file>', 'server private key (PEM) for the device listener')
    .option('--tls-ca <file>', 'CA (PEM) of device client certificates, if devices present one')
    .option('--server <url>', 'Updraft server URL (env UPDRAFT_SERVER)')
    .option('--token <token>', 'operator token (env UPDRAFT_TOKEN); also the password of the operator MQTT user')
    .option('--data-dir <dir>', 'where to find the operator token file')
    .action(async (opts: Options) => {
      if (Boolean(opts.tlsCert) !== Boolean(opts.tlsKey)) throw new UpdraftError('BAD_REQUEST', '--tls-cert and --tls-key go together');
      const api = new ApiClient(opts);
      const devices = await brokerCredentials(api);
      const secrets = opts.secrets ? parseSecrets(await readFile(opts.secrets, 'utf8')) : new Map<string, string>();
      const passwd = mosquittoPasswd({ operatorToken: api.token, devices, secrets });
      const dir = path.resolve(opts.out);
      await mkdir(dir, { recursive: true });
      const conf = mosquittoConf({
        dir,
        deviceHost: opts.deviceHost,
        devicePort: port(opts.devicePort, '--device-port'),
        serviceHost: opts.serviceHost,
        servicePort: port(opts.servicePort, '--service-port'),
        ...(opts.tlsCert && opts.tlsKey ? { tls: { certfile: path.resolve(opts.tlsCert), keyfile: path.resolve(opts.tlsKey), ...(opts.tlsCa ? { cafile: path.resolve(opts.tlsCa) } : {}) } } : {}),
      });
      await writeAtomic(path.join(dir, 'passwd'), passwd.text, 0o600);
      await writeAtomic(path.join(dir, 'acl'), mosquittoAcl(), 0o644);
      await writeAtomic(path.join(dir, 'mosquitto.conf'), conf, 0o644);
      const out = process.stdout;
      out.write(`wrote ${dir}/mosquitto.conf, passwd, acl: operator + ${passwd.included.length} devices\n`);
      if (passwd.revoked.length) out.write(`left out ${passwd.revoked.length} revoked devices\n`);
      if (passwd.missing.length) out.write(`no broker hash and no secret for ${passwd.missing.length} devices registered before hashes were kept (not admitted; add them to --secrets or rotate their secrets): ${passwd.missing.slice(0, 20).join(', ')}${passwd.missing.length > 20 ? ', ...' : ''}\n`);
      out.write(`run: mosquitto -c ${dir}/mosquitto.conf   (reload after regenerating: kill -HUP <pid>)\n`);
    });
}

/** Every registered device with what the broker needs (revoked, the kept hash), page by page. */
export async function brokerCredentials(api: ApiClient): Promise<RegisteredDevice[]> {
  const devices: RegisteredDevice[] = [];
  let after: string | undefined;
  do {
    const q = new URLSearchParams({ limit: '1000', ...(after ? { after } : {}) });
    const page = await api.call<{ items: RegisteredDevice[]; next?: string }>('GET', `/api/v1/broker/credentials?${q}`);
    devices.push(...page.items.map((d) => ({ deviceId: d.deviceId, revoked: d.revoked, ...(d.brokerHash ? { brokerHash: d.brokerHash } : {}) })));
    after = page.next;
  } while (after);
  return devices;
}

function port(value: string, flag: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > 65535) throw new UpdraftError('BAD_REQUEST', `${flag} must be a port from 1 to 65535, got ${value}`);
  return n;
}

/** Writes via a temp file and rename: Mosquitto reloading on SIGHUP never reads half a file. */
async function writeAtomic(file: string, text: string, mode: number): Promise<void> {
  await writeFile(`${file}.tmp`, text, { mode });
  await rename(`${file}.tmp`, file);
}
