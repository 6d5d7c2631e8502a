/** The `--data-dir` option of the commands that read the server's data directory. */
import { Option } from 'commander';

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
