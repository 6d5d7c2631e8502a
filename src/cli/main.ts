/**
 * The `updraft` command line. Every command exits 0 on success and, on error, 2 for bad input
 * (a usage error: a flag, an argument or a request the server refuses as a 4xx) or 1 for
 * anything else, with one readable line on stderr: `updraft: error: ...` (README, CLI reference).
 */
// first: it must run before any library that logs through `debug` is loaded
import './quiet-debug-first.ts';
import { errorLine, exitCodeOf } from './error-line.ts';
import { createProgram } from './program.ts';

// `updraft server --log-format json` writes its own last line, as JSON (server-command.ts)
createProgram().parseAsync(process.argv).catch((err: unknown) => {
  process.stderr.write(errorLine(err));
  process.exit(exitCodeOf(err));
});
