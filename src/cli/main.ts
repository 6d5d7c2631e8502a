/**
 * The `updraft` command line. Every command exits 0 on success and, on error, 2 for bad input
 * (a usage error: a flag, an argument or a request the server refuses as a 4xx) or 1 for
 * anything else, with one readable line on stderr: `updraft: error: ...` (README, CLI reference).
 */
// first: it must run before any library that logs through `debug` is loaded
import './quiet-debug-first.ts';
import { Command, CommanderError } from 'commander';
import { UpdraftError } from '../errors.ts';
import { addAgentCommand } from './agent-command.ts';
import { addApiCommands } from './api-commands.ts';
import { addBackupCommand } from './backup-command.ts';
import { addRestoreCommand } from './restore-command.ts';
import { addRolloutCommands } from './rollout-commands.ts';
import { addCaCommand } from './ca-command.ts';
import { addDeviceCertCommand } from './device-cert-command.ts';
import { addKeysCommand } from './keys-command.ts';
import { addBrokerCommands } from './broker-command.ts';
import { addDemoCommand } from './demo-command.ts';
import { addServerCommand } from './server-command.ts';
import { addSimCommand } from './sim-command.ts';
import { addTokenCommand } from './token-command.ts';
import { addDoctorCommand } from './doctor-command.ts';
import { errorLine, exitCodeOf } from './error-line.ts';

const program = new Command('updraft')
  .description('Self-hosted over-the-air software updates for IoT fleets')
  // commander's own error lines are not printed: usageErrors() turns them into the one line
  .configureOutput({ outputError: () => undefined });

addServerCommand(program);
addApiCommands(program);
addRolloutCommands(program);
addDeviceCertCommand(program);
addKeysCommand(program);
addCaCommand(program);
addAgentCommand(program);
addDemoCommand(program);
addSimCommand(program);
addBrokerCommands(program);
addBackupCommand(program);
addRestoreCommand(program);
addTokenCommand(program);
addDoctorCommand(program);

/** What commander ends with that is no error: help asked for and --version. */
const NOT_ERRORS = new Set(['commander.helpDisplayed', 'commander.version', 'commander.executeSubCommandAsync']);

/**
 * Makes commander's usage errors (an unknown option, command or choice, a missing argument or
 * required option) bad input like any other: exit 2 with one line naming the command's help.
 * Set on every command, after they are all added: the hint names the command that refused.
 */
function usageErrors(cmd: Command, path: string): void {
  cmd.exitOverride((err: CommanderError) => {
    if (NOT_ERRORS.has(err.code)) process.exit(err.exitCode);
    // help shown: asked for (`updraft help job`, exit 0), or for a command named without its
    // subcommand (`updraft job`: on stderr, which is the message; a usage error like the
    // others, so exit 2 where commander says 1)
    if (err.code === 'commander.help') process.exit(err.exitCode === 0 ? 0 : 2);
    // one line: a suggestion ("(Did you mean --data-dir?)") comes after a line break
    const message = err.message.replace(/^error: /, '').replace(/\s*\n\s*/g, ' ');
    throw new UpdraftError('BAD_REQUEST', `${message} (see ${path} --help)`, { cause: err });
  });
  for (const sub of cmd.commands) usageErrors(sub, `${path} ${sub.name()}`);
}
usageErrors(program, 'updraft');

// `updraft server --log-format json` writes its own last line, as JSON (server-command.ts)
program.parseAsync(process.argv).catch((err: unknown) => {
  process.stderr.write(errorLine(err));
  process.exit(exitCodeOf(err));
});
