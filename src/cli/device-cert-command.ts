/**
 * `updraft device cert <id>`: a client certificate for a registered device, issued by the
 * server's CA (CN = device id), for MQTT over TLS with mutual authentication.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { Command } from 'commander';
import { UpdraftError } from '../errors.ts';
import { ApiClient, type ApiOptions } from './api-client.ts';
import { dataDirOption } from './data-dir-option.ts';
import { pathSegment } from './path-segment.ts';
import { makeOutputDir } from './output-file.ts';

/** Adds `device cert` (to the `device` command, created if absent). */
export function addDeviceCertCommand(program: Command): void {
  const device = program.commands.find((c) => c.name() === 'device') ?? program.command('device').description('register and inspect devices');
  device
    .command('cert <id>')
    .description('issue a client certificate for a registered device (CN = device id) from the server CA')
    .option('--out <dir>', 'where to write <id>.crt, <id>.key (mode 0600) and ca.crt', '.')
    .option('--csr <file>', "certify the key of this certificate signing request (PEM, CN = the device id), made on the device: no private key is made here or travels")
    .option('--server <url>', 'Updraft server URL [env UPDRAFT_SERVER, default http://127.0.0.1:8080]')
    .option('--token <token>', 'operator token [env UPDRAFT_TOKEN, default: read from <data-dir>/operator-token]')
    .addOption(dataDirOption('the server data directory holding the operator token'))
    .option('--json', 'print JSON')
    .action(async (id: string, opts: ApiOptions & { out: string; csr?: string; json?: boolean }) => {
      const csr = opts.csr === undefined ? undefined : await readFile(opts.csr, 'utf8').catch((err: Error) => {
        throw new UpdraftError('BAD_REQUEST', `cannot read the certificate signing request ${opts.csr}: ${err.message}`);
      });
      const api = new ApiClient(opts);
      const route = `/api/v1/devices/${pathSegment('device id', id)}/certificate`;
      // checked before the server issues anything: a private key made for a directory that
      // cannot take it would be lost, its certificate issued all the same
      const out = await makeOutputDir('--out', opts.out);
      const files = { cert: path.join(opts.out, `${id}.crt`), ...(csr === undefined ? { key: path.join(opts.out, `${id}.key`) } : {}), ca: path.join(opts.out, 'ca.crt') };
      try {
        const r = await api.call<{ certificate: string; privateKey?: string; ca: string }>('POST', route, csr !== undefined ? { csr } : undefined);
        if (r.privateKey === undefined) delete files.key;
        if (files.key !== undefined) await out.write(`${id}.key`, r.privateKey!, 0o600);
        await out.write(`${id}.crt`, r.certificate, 0o644);
        await out.write('ca.crt', r.ca, 0o644);
      } catch (err) {
        await out.undo(); // no key without its certificate, no directory made for nothing
        throw err;
      }
      const keyLine = files.key !== undefined ? `  ${files.key} (mode 0600)\n` : '';
      const keyArg = files.key ?? '<the key of the request, on the device>';
      const text = `certificate for ${id}${csr !== undefined ? ' (for the key of the request)' : ''}\n  ${files.cert}\n${keyLine}  ${files.ca}\nrun: updraft agent --device ${id} --broker mqtts://<host>:8883 --ca ${files.ca} --cert ${files.cert} --key ${keyArg} ...`;
      process.stdout.write(opts.json ? JSON.stringify(files, null, 2) + '\n' : text + '\n');
    });
}
