/**
 * The `updraft` command line. Every command exits 0 on success and, on error, non-zero with
 * one readable line on stderr.
 */
import { Command } from 'commander';
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

const program = new Command('updraft')
  .description('Self-hosted over-the-air software updates for IoT fleets')
  .showHelpAfterError('(run with --help for usage)')
  .configureOutput({ outputError: (str, write) => write(str) });

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

program.parseAsync(process.argv).catch((err: unknown) => {
  const message = err instanceof UpdraftError || err instanceof Error ? err.message : String(err);
  process.stderr.write(`updraft: error: ${message.split('\n')[0]}\n`);
  process.exit(err instanceof UpdraftError && err.status >= 400 && err.status < 500 ? 2 : 1);
});
