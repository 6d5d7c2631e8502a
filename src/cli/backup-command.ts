/** `updraft backup`: a consistent copy of the data directory, taken while the server runs (server/backup.ts). */
import type { Command } from 'commander';
import { loadConfig } from '../config/load-config.ts';
import { redactUrl } from '../util/redact-url.ts';
import { makeOutputDir } from './output-file.ts';

/** Adds `backup`. */
export function addBackupCommand(program: Command): void {
  program
    .command('backup')
    .description('copy the data directory (database, artifacts, keys, CA, operator token) while the server runs; restore it with updraft restore')
    .requiredOption('--out <dir>', 'a new (or empty) directory for the copy; it holds secrets and is made 0700')
    .option('--data-dir <dir>', 'the server data directory, as updraft server --data-dir (env UPDRAFT_DATA_DIR; default ./data)')
    .option('--db <url>', 'the state store, as updraft server --db (env UPDRAFT_DB): PostgreSQL is not copied (pg_dump it), the artifact bytes in the data directory are')
    .option('--blob <url>', 'the artifact storage, as updraft server --blob (env UPDRAFT_BLOB)')
    .option('--config <file>', "the server's JSON configuration file, for dataDir, db and blob")
    .option('--json', 'print JSON')
    .action(async (opts: { out: string; dataDir?: string; db?: string; blob?: string; config?: string; json?: boolean }) => {
      // the server's own settings, from the same sources in the same order (flags, environment, file)
      const config = loadConfig({ ...(opts.config !== undefined ? { file: opts.config } : {}), env: process.env, flags: { 'data-dir': opts.dataDir, db: opts.db, blob: opts.blob } });
      // a directory that cannot be made or written (a file in the way, /proc, no permission) is
      // said in one line, exit 2, before anything is read; made and removed again here, so the
      // backup still makes it itself, and removes it when the copy fails
      await (await makeOutputDir('--out', opts.out, 0o700)).undo();
      const { backupDataDir } = await import('../server/backup.ts'); // SQLite: loaded only to run
      const r = await backupDataDir({ dataDir: config.dataDir, db: config.db, blob: config.blob }, opts.out);
      const lines = [
        `backed up ${config.dataDir} to ${opts.out}`,
        r.database
          ? `  database: updraft.db, as of one instant; ${r.bucket ? `its ${r.bucket.artifacts} artifact(s) are in the bucket ${r.bucket.url}, not copied: back it up with its versioning or replication` : `${r.artifacts} artifact(s), ${r.artifactBytes} bytes`}`
          : `  database: PostgreSQL ${redactUrl(config.db)}, not copied: back it up with pg_dump; ${config.blob ? 'artifacts in the bucket' : `${r.artifacts} artifact(s) it names, ${r.artifactBytes} bytes, copied from ${config.dataDir}/artifacts`}`,
        `  files: ${r.files.length === 0 ? 'none' : r.files.join(', ')}`,
      ];
      process.stdout.write(opts.json ? JSON.stringify(r, null, 2) + '\n' : lines.join('\n') + '\n');
    });
}
