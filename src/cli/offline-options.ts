/**
 * The `--offline` form of a command that otherwise asks the running server (`token rotate`,
 * `keys install-cert`, `keys rotate-url`) works on --data-dir's files only. A `--server` or
 * `--token` given with it was dropped without a word, a bad URL too, which every command that
 * asks the server refuses (api-client.ts serverUrl): the operator who names a server means
 * that server, and would take the change (a token rotated, a certificate installed) as made
 * there, where only the files of the next start changed. So the two together are a usage
 * error (exit code 2), in one line naming both, as `broker mosquitto-config --offline` has it.
 * UPDRAFT_SERVER and UPDRAFT_TOKEN are not refused: they are set for a whole shell or unit,
 * not for this one command.
 */
import { UpdraftError } from '../errors.ts';

/** BAD_REQUEST when `--server` or `--token` came with `--offline`; `does`: what the offline form does instead. */
export function refuseServerOptions(opts: { offline?: boolean; server?: string; token?: string }, does: string): void {
  if (!opts.offline) return;
  const given = [opts.server !== undefined ? '--server' : undefined, opts.token !== undefined ? '--token' : undefined].filter((f) => f !== undefined);
  if (given.length === 0) return;
  const names = given.join(' and ');
  throw new UpdraftError('BAD_REQUEST', `${names} ${given.length === 1 ? 'does' : 'do'} not go with --offline: --offline ${does}, no server is asked; drop ${names}, or --offline to make the change on the running server`);
}
