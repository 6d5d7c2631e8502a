/** `updraft ca init`: Updraft's own certificate authority for device client certificates. */
import type { Command } from 'commander';
import { dataDirOption } from './data-dir-option.ts';
import { whileWritingOffline } from './offline-lock.ts';

/** Adds `ca`. */
export function addCaCommand(program: Command): void {
  const ca = program.command('ca').description("Updraft's certificate authority for MQTT over TLS with client certificates");
  ca.command('init')
    .description('create the CA in the data directory (the server also creates it on first start); refuses to replace one')
    .addOption(dataDirOption('the server data directory'))
    .option('--name <cn>', 'subject common name of the CA', 'Updraft device CA')
    .action(async (opts: { dataDir: string; name: string }) => {
      const { caPaths, createCa } = await import('../pki/certificate-authority.ts'); // node-forge: loaded only to run
      // under the lock a starting server takes to create its CA (cli/offline-lock.ts)
      await whileWritingOffline(opts.dataDir, () => createCa(opts.dataDir, opts.name));
      const p = caPaths(opts.dataDir);
      process.stdout.write(`CA created\n  certificate ${p.cert} (give it to devices: updraft agent --ca)\n  key         ${p.key} (mode 0600; never leaves the server)\n`);
    });
}
