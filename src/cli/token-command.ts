/**
 * `updraft token rotate`: replaces the operator token. Online (default), the running server
 * replaces it at once: the old token is refused by the API and at MQTT CONNECT, the
 * operator's MQTT connections and live event streams are closed, and the server's
 * `<data-dir>/operator-token` holds the new one. `--offline` writes a new token into a data
 * directory for the next start (a stopped server, or the instances of the production
 * topology, which share the token with each other and the broker).
 */
import type { Command } from 'commander';
import { replaceOperatorToken } from '../server/operator-token.ts';
import { UpdraftError } from '../errors.ts';
import { ApiClient, type ApiOptions } from './api-client.ts';
import { print, withApi, type Common } from './api-commands.ts';
import { parseDuration, recordAfterOffline } from './keys-command.ts';
import { configuredDataDir, dataDirOption } from './data-dir-option.ts';
import { whileWritingOffline } from './offline-lock.ts';
import { pathSegment } from './path-segment.ts';
import { refuseServerOptions } from './offline-options.ts';

export function addTokenCommand(program: Command): void {
  const token = program.command('token').description('the operator token, and named viewer and operator tokens');
  token
    .command('rotate')
    .description('replace the operator token: the old one is refused from now on')
    .option('--server <url>', 'Updraft server URL [env UPDRAFT_SERVER, default http://127.0.0.1:8080]')
    .option('--token <token>', 'the current operator token [env UPDRAFT_TOKEN, default: read from <data-dir>/operator-token]')
    .addOption(dataDirOption('the server data directory holding the operator token'))
    .option('--offline', 'write a new token into --data-dir for the next start, without a running server')
    .option('--db <url>', 'with --offline: the PostgreSQL store the instances share, as updraft server --db (env UPDRAFT_DB): the new token is recorded there, so the instances given it start and the others are told')
    .option('--config <file>', "with --offline: the server's JSON configuration file, for dataDir and db")
    .option('--json', 'print JSON')
    .action(async (opts: ApiOptions & { dataDir: string; offline?: boolean; db?: string; config?: string; json?: boolean }, cmd: Command) => {
      if (opts.offline) opts.dataDir = configuredDataDir(opts, cmd);
      refuseServerOptions(opts, 'writes a new token into --data-dir for the next start');
      if (opts.offline) {
        // a token rotated because it leaked must be refused now, which only the online rotation does
        const { serverHeldFile } = await import('../server/data-dir-lock.ts');
        const running = serverHeldFile(opts.dataDir) !== undefined;
        // under the lock a starting server takes, so the two do not write the token at once
        const next = await whileWritingOffline(opts.dataDir, () => replaceOperatorToken(opts.dataDir));
        if (running) process.stderr.write(`updraft: warning: a server is running on ${opts.dataDir}: it accepts the old token until it restarts; to refuse the old token at once, rotate online instead (updraft token rotate, without --offline)\n`);
        const recorded = await recordAfterOffline(opts, ['operator-token']);
        const text = [
          `new operator token (shown once; also in ${opts.dataDir}/operator-token, mode 0600): ${next}`,
          "  it is used from the server's next start",
          // each run makes a new token: instances that rotated one each would not share it
          "  instances on an external broker share one token: copy this file into every instance's data directory (do not rotate in each), then regenerate the broker's passwd (updraft broker mosquitto-config --offline)",
          ...recorded.lines,
        ].join('\n');
        process.stdout.write(opts.json ? JSON.stringify({ token: next, ...recorded.json }, null, 2) + '\n' : text + '\n');
        return;
      }
      if (opts.db !== undefined || opts.config !== undefined) throw new UpdraftError('BAD_REQUEST', '--db and --config go with --offline (online, the running server records the new token itself)');
      const r = await new ApiClient(opts).call<{ token: string; disconnected: number }>('POST', '/api/v1/operator-token/rotate');
      const text = [
        `new operator token (shown once; also in the server's data directory, operator-token, mode 0600): ${r.token}`,
        `  the old one is refused from now on; ${r.disconnected} operator MQTT connection(s) closed, live event streams ended`,
        '  pass the new one with --token or UPDRAFT_TOKEN where the old one was set',
      ].join('\n');
      process.stdout.write(opts.json ? JSON.stringify(r, null, 2) + '\n' : text + '\n');
    });

  // named tokens (server/named-tokens.ts): read-only viewers, and operators by name
  const kinds = [
    {
      role: 'viewer',
      label: 'viewer token',
      description: 'read-only API tokens: for monitoring, wall dashboards, support desks; they cannot change anything',
      adds: 'a new read-only token named <name> (shown once)',
      may: '  it reads the operator API (GET, the event stream, dry runs) and changes nothing; it is no MQTT password',
    },
    {
      role: 'operator',
      label: 'operator token',
      description: "named operator tokens: one per person or tool, with the operator token's rights over the API; the audit log names who did what, and each is removed alone",
      adds: 'a new operator token named <name> (shown once): it may do everything the operator token may over the API',
      may: '  it may do everything the operator token may over the API (the audit log names it); it is no MQTT password',
    },
  ] as const;
  for (const kind of kinds) {
    const group = token.command(kind.role).description(kind.description);
    const path = `/api/v1/${kind.role}-tokens`;
    withApi(group.command('add <name>').description(kind.adds).option('--expires-in <duration>', 'refused after this long: 90d, 12h, 30m (default: never)')).action(async (name: string, opts: Common & { expiresIn?: string }) => {
      const expiresInSeconds = opts.expiresIn === undefined ? undefined : parseDuration('--expires-in', opts.expiresIn);
      const r = await new ApiClient(opts).call<{ name: string; token: string; createdAt: number; expiresAt?: number }>('POST', path, { name, ...(expiresInSeconds !== undefined ? { expiresInSeconds } : {}) });
      const text = [
        `${kind.label} ${r.name} (shown once; the server keeps only its hash): ${r.token}`,
        ...(r.expiresAt !== undefined ? [`  it expires at ${new Date(r.expiresAt).toISOString()}`] : []),
        kind.may,
        `  remove it with: updraft token ${kind.role} remove ${r.name}`,
      ].join('\n');
      print(opts, r, text);
    });
    withApi(group.command('list').description(`the ${kind.label}s, by name (never the tokens)`)).action(async (opts: Common) => {
      const r = await new ApiClient(opts).call<{ items: { name: string; createdAt: number; expiresAt?: number; lastUsedAt?: number; createdBy?: string }[] }>('GET', path);
      const expiry = (t: { expiresAt?: number }) => (t.expiresAt === undefined ? '' : t.expiresAt <= Date.now() ? `  EXPIRED at ${new Date(t.expiresAt).toISOString()}` : `  expires ${new Date(t.expiresAt).toISOString()}`);
      // a token long unused is one to remove
      const used = (t: { lastUsedAt?: number }) => (t.lastUsedAt === undefined ? '  never used' : `  last used ${new Date(t.lastUsedAt).toISOString()}`);
      // who added it: a named operator may add tokens, so removing one means looking at what it added
      const by = (t: { createdBy?: string }) => (t.createdBy === undefined || t.createdBy === 'operator' ? '' : ` by ${t.createdBy.replace(/^operator /, '')}`);
      print(opts, r, r.items.length === 0 ? `no ${kind.label}` : r.items.map((t) => `${t.name}  added ${new Date(t.createdAt).toISOString()}${by(t)}${used(t)}${expiry(t)}`).join('\n'));
    });
    withApi(group.command('remove <name>').description(`removes ${kind.label === 'viewer token' ? 'a read-only' : 'an operator'} token: refused at once by this server, within 30 s by every instance`)).action(async (name: string, opts: Common) => {
      const r = await new ApiClient(opts).call<{ removed: string; added?: { role: string; name: string }[] }>('DELETE', `${path}/${pathSegment('token name', name)}`);
      const added = r.added ?? [];
      const also = added.length === 0 ? '' : `\n  it added: ${added.map((t) => `${t.role} token ${t.name}`).join(', ')}; they stay valid (remove them too if they should go with it)`;
      print(opts, r, `${kind.label} ${r.removed} removed: refused from now on${also}`);
    });
  }
}
