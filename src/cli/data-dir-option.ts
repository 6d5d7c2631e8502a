/** The `--data-dir` option of the commands that read the server's data directory. */
import { type Command, Option } from 'commander';
import { loadConfig } from '../config/load-config.ts';

/**
 * `--data-dir <dir>`: the flag, else `UPDRAFT_DATA_DIR` (the variable `updraft server` reads
 * it from, config/schema.ts), else `./data`. A plain default of `./data` hid the variable, and
 * `token rotate --offline` wrote a token into the current directory while the server's stayed.
 * An empty variable is one not set, as the server reads it (commander's `.env()` would take
 * '' for the current directory).
 */
export function dataDirOption(description: string): Option {
  return new Option('--data-dir <dir>', `${description} [env UPDRAFT_DATA_DIR]`).default(process.env.UPDRAFT_DATA_DIR || './data');
}

/**
 * The data directory of a command that also takes the server's `--config <file>`: `--data-dir`
 * when given on the command line, else what the server reads (UPDRAFT_DATA_DIR, else the
 * file's `dataDir`, else ./data; the environment wins over the file, as for `updraft
 * server`). The option's default (./data) was passed as if given, and flags win over the
 * file: `ca drop-previous --config cfg.json` from another directory found no previous CA in
 * ./data, said "nothing to remove" and created ./data/server.lock (review of a896f56).
 */
export function configuredDataDir(opts: { dataDir: string; config?: string }, cmd: Command): string {
  if (opts.config === undefined || cmd.getOptionValueSource('dataDir') === 'cli') return opts.dataDir;
  return loadConfig({ file: opts.config, env: process.env }).dataDir;
}

/** The help of `--config` beside `--data-dir` and `--db`: which wins. */
export const CONFIG_FILE_HELP = "the server's JSON configuration file, for dataDir and db; --data-dir and --db (and UPDRAFT_DATA_DIR, UPDRAFT_DB) win over it when given";
