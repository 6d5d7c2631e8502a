/**
 * `updraft device cert <id>`: a client certificate for a registered device, issued by the
 * server's CA (CN = device id), for MQTT over TLS with mutual authentication.
 */
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import type { Command } from 'commander';
import { writeAtomic } from '../pki/certificate-authority.ts';
import { ApiClient, type ApiOptions } from './api-client.ts';

/** Adds `device cert` (to the `device` command, created if absent). */
export function addDeviceCertCommand(program: Command): void {
  const device = program.commands.find((c) => c.name() === 'device') ?? program.command('device').description('register and inspect devices');
  device
    .command('cert <id>')
    .description('issue a client certificate for a registered device (CN = device id) from the server CA')
    .option('--out <dir>', 'where to write <id>.crt, <id>.key (mode 0600) and ca.crt', '.')
    .option('--server <url>', 'Updraft server URL [env UPDRAFT_SERVER, default http://127.0.0.1:8080]')
    .option('--token <token>', 'operator token [env UPDRAFT_TOKEN, default: read from <data-dir>/operator-token]')
    .option('--data-dir <dir>', 'the server data directory holding the operator token', './data')
    .option('--json', 'print JSON')
    .action(async (id: string, opts: ApiOptions & { out: string; json?: boolean }) => {
      const r = await new ApiClient(opts).call<{ certificate: string; privateKey: string; ca: string }>('POST', `/api/v1/devices/${encodeURIComponent(id)}/certificate`);
      await mkdir(opts.out, { recursive: true });
      const files = { cert: path.join(opts.out, `${id}.crt`), key: path.join(opts.out, `${id}.key`), ca: path.join(opts.out, 'ca.crt') };
      await writeAtomic(files.key, r.privateKey, 0o600);
      await writeAtomic(files.cert, r.certificate, 0o644);
      await writeAtomic(files.ca, r.ca, 0o644);
      const text = `certificate for ${id}\n  ${files.cert}\n  ${files.key} (mode 0600)\n  ${files.ca}\nrun: updraft agent --device ${id} --broker mqtts://<host>:8883 --ca ${files.ca} --cert ${files.cert} --key ${files.key} ...`;
      process.stdout.write(opts.json ? JSON.stringify(files, null, 2) + '\n' : text + '\n');
    });
}
