/**
 * The `updraft` command line's commands (README, CLI reference), built in one place: main.ts
 * parses it, and a test can list its commands (test/cli/server-url.test.ts).
 */
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

/** The `updraft` program with every command, usage errors made bad input (exit 2); parsed by main.ts. */
export function createProgram(): Command {
  const program = new Command('updraft')
    .description('Self-hosted over-the-air software updates for IoT fleets')
    // commander's own error lines are not printed: usageErrors() turns them into the one line
    .configureOutput({ outputError: () => undefined });
  for (const add of [
    addServerCommand,
    addApiCommands,
    addRolloutCommands,
    addDeviceCertCommand,
    addKeysCommand,
    addCaCommand,
    addAgentCommand,
    addDemoCommand,
    addSimCommand,
    addBrokerCommands,
    addBackupCommand,
    addRestoreCommand,
    addTokenCommand,
    addDoctorCommand,
  ])
    add(program);
  usageErrors(program, 'updraft');
  return program;
}

/** What commander ends with that is no error: help asked for and --version. */
const NOT_ERRORS = new Set(['commander.helpDisplayed', 'commander.version', 'commander.executeSubCommandAsync']);

/**
 * Makes commander's usage errors (an unknown option, command or choice, a missing argument or
 * required option) bad input like any other: exit 2 with one line naming the command's help.
 * Set on every command, after they are all added: the hint names the command that refused.
 */
function usageErrors(cmd: Command, path: string): void {
  // what this command's last parse did not know as options, the unknown option first, for
  // the handler below (commander keeps it to itself)
  let unknown: string[] = [];
  const parseOptions = cmd.parseOptions.bind(cmd);
  cmd.parseOptions = (argv: string[]) => {
    const parsed = parseOptions(argv);
    unknown = parsed.unknown;
    return parsed;
  };
  cmd.exitOverride((err: CommanderError) => {
    if (NOT_ERRORS.has(err.code)) process.exit(err.exitCode);
    // help shown: asked for (`updraft help job`, exit 0), or for a command named without its
    // subcommand (`updraft job`: on stderr, which is the message; a usage error like the
    // others, so exit 2 where commander says 1)
    if (err.code === 'commander.help') process.exit(err.exitCode === 0 ? 0 : 2);
    // commander checks required options before unknown ones: a misspelt required option
    // (`deploy --artefact fw@2`) was said as the required one missing, the misspelling unnamed
    // (QA, 2026-12-07). Said as the unknown option it is, with commander's suggestion, by its
    // own check (unknownOption: private in its typings, present in commander 14; throws back
    // into this handler with that error)
    if (err.code === 'commander.missingMandatoryOptionValue') {
      // the options commander itself did not know (not an operand that starts with '-': a
      // file named after `--`, review), as its own check would name them
      const flag = unknown[0];
      const unknownOption = (cmd as unknown as { unknownOption?: (flag: string) => void }).unknownOption;
      if (flag !== undefined && typeof unknownOption === 'function') unknownOption.call(cmd, flag);
    }
    // one line: a suggestion ("(Did you mean --data-dir?)") comes after a line break
    const message = err.message.replace(/^error: /, '').replace(/\s*\n\s*/g, ' ');
    throw new UpdraftError('BAD_REQUEST', `${message} (see ${path} --help)`, { cause: err });
  });
  for (const sub of cmd.commands) usageErrors(sub, `${path} ${sub.name()}`);
}
