/** `updraft backup`: a consistent copy of the data directory, taken while the server runs (server/backup.ts). */
import type { Command } from 'commander';

export function addBackupCommand(program: Command): void {
  program
    .command('backup')
    .description('copy the data directory (database, artifacts, keys, CA, operator token) while the server runs; restore it with updraft restore')
    .requiredOption('--out <dir>', 'a new (or empty) directory for the copy; it holds secrets and is made 0700')
    .option('--data-dir <dir>', 'the server data directory', './data')
    .option('--json', 'print JSON')
    .action(async (opts: { out: string; dataDir: string; json?: boolean }) => {
      const { backupDataDir } = await import('../server/backup.ts'); // SQLite: loaded only to run
      const r = await backupDataDir(opts.dataDir, opts.out);
      const lines = [
        `backed up ${opts.dataDir} to ${opts.out}`,
        r.database
          ? `  database: updraft.db, as of one instant; ${r.artifacts} artifact(s), ${r.artifactBytes} bytes`
          : '  no embedded database here: a server with --db keeps its state in PostgreSQL (pg_dump it), and with --blob its artifacts in the bucket',
        `  files: ${r.files.length === 0 ? 'none' : r.files.join(', ')}`,
      ];
      process.stdout.write(opts.json ? JSON.stringify(r, null, 2) + '\n' : lines.join('\n') + '\n');
    });
}
