/** `updraft restore`: puts a backup in place of a data directory, the old contents moved aside (server/restore.ts). */
import type { Command } from 'commander';

/** Adds `restore`. */
export function addRestoreCommand(program: Command): void {
  program
    .command('restore')
    .description('put a copy made by updraft backup in place of a data directory, with its server stopped; the directory\'s current contents (a crashed server\'s updraft.db-wal too) are moved aside, never deleted')
    .argument('<backup-dir>', 'the directory updraft backup --out wrote')
    .requiredOption('--data-dir <dir>', 'the server data directory to restore into')
    .option('--unmarked', 'restore a backup with no updraft-backup.json, made by an Updraft older than 2026-12-04, which you know finished (its database, builds, token and signing key are checked)')
    .option('--json', 'print JSON')
    .action(async (backupDir: string, opts: { dataDir: string; unmarked?: boolean; json?: boolean }) => {
      const { restoreDataDir } = await import('../server/restore.ts'); // SQLite: loaded only to run
      // on stderr: stdout is the report (--json: only JSON)
      const progress = (line: string) => void process.stderr.write(`${line}\n`);
      const r = await restoreDataDir(backupDir, opts.dataDir, new Date(), { unmarked: opts.unmarked === true, progress });
      const lines = [
        `restored ${backupDir} into ${opts.dataDir}; start the server on it`,
        r.aside ? `  its previous contents (${r.movedAside.join(', ')}) are in ${r.aside}: delete them once the restored server is checked` : '  it was empty',
        `  files: ${r.files.join(', ')}`,
        ...(r.keptPostgresRecord
          ? [`  its server last ran on PostgreSQL: store.json says so still (the backup said otherwise), so the backup's updraft.db, if any, is not read as its store; start it with --db (its state is what PostgreSQL holds: pg_restore a dump to go back), or without --db to run on the backup's updraft.db (it warns once, then records sqlite)`]
          : []),
      ];
      process.stdout.write(opts.json ? JSON.stringify(r, null, 2) + '\n' : lines.join('\n') + '\n');
    });
}
