/** `updraft server`: runs the whole system with embedded defaults (what `npm start` runs). */
import type { Command } from 'commander';
import { loadConfig } from '../config/load-config.ts';
import { unknownEnvironment } from '../config/environment.ts';
import { SETTINGS } from '../config/schema.ts';
import { redactedConfig, settingsMarkdown } from '../config/load-config.ts';
import type { UpdraftConfig } from '../config/schema.ts';
import { markOperatorTokenShown, markOperatorTokenUnshown } from '../server/operator-token.ts';
import type { UpdraftServer } from '../server/updraft-server.ts';
import { createLogger, type LogFormat, type Logger } from '../util/logger.ts';
import { logProcessWarnings } from '../util/process-warnings.ts';
import { redactUrl } from '../util/redact-url.ts';
import { errorLine, exitCodeOf } from './error-line.ts';

/**
 * Adds `server` and `config`. The server's modules (the broker, the stores, the S3 client)
 * are loaded only when it runs: every other command starts without them.
 */
export function addServerCommand(program: Command): void {
  const cmd = program.command('server').description('run the Updraft server: embedded MQTT broker, replica, HTTP API and downloads, store');
  cmd.option('--config <file>', 'JSON configuration file');
  for (const s of SETTINGS) cmd.option(`--${s.flag} <value>`, `${s.doc} [env ${s.env}, default ${String(s.default)}]`);
  cmd.action(async (opts: Record<string, unknown>) => {
    const flags: Record<string, unknown> = {};
    for (const s of SETTINGS) {
      const key = s.flag.replace(/-([a-z])/g, (_m, c: string) => c.toUpperCase());
      if (opts[key] !== undefined) flags[s.flag] = opts[key];
    }
    // the line saying why the server exited is in the log's format (a configuration refused
    // before it is known: in the format the flag or the environment asked for)
    let format: LogFormat = flags['log-format'] === 'json' || (flags['log-format'] === undefined && process.env.UPDRAFT_LOG_FORMAT === 'json') ? 'json' : 'text';
    try {
      const config = loadConfig({ ...(typeof opts.config === 'string' ? { file: opts.config } : {}), env: process.env, flags });
      format = config.logFormat;
      await runServer(config);
    } catch (err) {
      if (format === 'text') throw err; // main.ts writes the readable line
      process.stderr.write(errorLine(err, 'json'));
      process.exit(exitCodeOf(err));
    }
  });

  program
    .command('config')
    .description('print the configuration settings')
    .option('--docs', 'as a Markdown table')
    .option('--config <file>', 'with this JSON configuration file, as `updraft server --config` reads it (then the environment wins over it)')
    .action((opts: { docs?: boolean; config?: string }) => {
      if (opts.docs) return void process.stdout.write(settingsMarkdown() + '\n');
      for (const w of unknownEnvironment(process.env)) process.stderr.write(`updraft: warning: ${w}\n`);
      process.stdout.write(JSON.stringify(redactedConfig(loadConfig({ ...(opts.config !== undefined ? { file: opts.config } : {}), env: process.env })), null, 2) + '\n');
    });
}

/**
 * How long a stop may take once it begins (after the drain): a dependency that does not answer
 * (PostgreSQL stuck, a network partition) holds a part's stop, and the process would wait for
 * it for ever, also through further signals.
 */
const STOP_LIMIT_MS = 30_000;

/** Exit codes of a process ended by a second signal: 128 + the signal's number, as the shell reports one killed by it. */
const SIGNAL_EXIT: Record<string, number> = { SIGINT: 130, SIGTERM: 143 };

/** Starts the server, prints where it serves, and stops it on SIGINT or SIGTERM. */
async function runServer(config: UpdraftConfig): Promise<void> {
  // a log (stderr) gone with its pipe has nowhere to say so: the server goes on without it
  // (an unhandled 'error' event ended the process)
  process.stderr.on('error', () => undefined);
  const logger = createLogger({ level: config.logLevel, format: config.logFormat });
  // Node's warnings (the AWS SDK's notice at each start with --blob s3) as log lines of the chosen format
  logProcessWarnings(logger);
  for (const w of unknownEnvironment(process.env)) logger.warn(w);
  // a SIGHUP while starting (a reload sent as the unit starts, through a long migration) must
  // not end the process, as its default action would: the files are read at the start anyway
  let hupWhileStarting = false;
  const onHupWhileStarting = () => {
    hupWhileStarting = true;
    logger.info('SIGHUP while starting: the TLS certificate files are read again once the server serves');
  };
  process.on('SIGHUP', onHupWhileStarting);
  const { UpdraftServer } = await import('../server/updraft-server.ts');
  const server = new UpdraftServer(config, { logger });
  try {
    await server.start();
  } finally {
    process.off('SIGHUP', onHupWhileStarting);
  }
  // before the startup lines: a signal sent once they are seen finds its handler; the stop
  // waits for what the lines leave to write (the operator token's mark) before the exit
  const startup = { written: Promise.resolve() };
  stopOnSignals(server, config, logger, startup);
  if (hupWhileStarting) void server.reloadTlsFiles();
  const out = process.stdout;
  // the startup lines are a courtesy: a closed stdout (`updraft server | head -1`, a
  // supervisor's log pipe gone) is said once on the log, and the server goes on. Without a
  // handler the stream's EPIPE was an unhandled 'error' event, which ended the process
  let stdoutFailed = false;
  out.on('error', (err: NodeJS.ErrnoException) => {
    if (stdoutFailed) return;
    stdoutFailed = true;
    logger.warn(`stdout is closed (${err.code ?? err.message}): the startup lines are not shown; the server goes on`);
  });
  out.write(brokerLine(config, server.broker.port));
  out.write(`updraft: HTTP API and downloads on ${config.http.tls === 'on' ? 'https' : 'http'}://${config.http.host}:${server.http.port} (devices use ${server.publicUrl})\n`);
  if (server.broker.tlsPort !== undefined) out.write(`updraft: MQTT over TLS with client certificates on mqtts://${config.mqtt.host}:${server.broker.tlsPort} (CA ${config.dataDir}/pki/ca.crt)\n`);
  out.write(`updraft: software signing key ${server.security.signingKey.keyId}; provision agents with ${server.security.publicKeyFile}\n`);
  out.write(`updraft: data in ${config.dataDir}\n`);
  if (server.tokenUnshown) {
    // the mark goes once the line is written; a line lost to a closed stdout (`updraft server
    // | head -1`) leaves one, and the next start prints the token again (review)
    const line = `updraft: operator token (shown once; also in ${config.dataDir}/operator-token, mode 0600): ${server.operatorToken}\n`;
    startup.written = new Promise<Error | null | undefined>((resolve) => out.write(line, resolve)).then((err) =>
      (err ? markOperatorTokenUnshown(config.dataDir) : markOperatorTokenShown(config.dataDir)).catch((e: Error) => logger.warn(`the operator token's mark (${err ? 'not shown' : 'shown'}) could not be written: ${e.message}`)),
    );
  }
}

/**
 * SIGHUP: the operator's TLS files read again (`UpdraftServer.reloadTlsFiles`), nothing else.
 * SIGINT or SIGTERM: the drain (--drain-seconds), then the stop, exit 0. A second signal
 * during the drain ends it (the stop begins); during the stop it ends the process at once.
 * A stop not finished within STOP_LIMIT_MS ends it too, naming the part it waited for.
 */
function stopOnSignals(server: UpdraftServer, config: UpdraftConfig, logger: Logger, startup: { written: Promise<void> }): void {
  let phase: 'serving' | 'draining' | 'stopping' = 'serving';
  let endDrain: (() => void) | undefined;
  const shutdown = (signal: NodeJS.Signals) => {
    if (phase === 'draining') return void endDrain?.();
    if (phase === 'stopping') {
      logger.error(`${signal} again while stopping: exiting now without waiting for the stop to finish`, { waitingFor: server.stopWaitingFor ?? 'nothing' });
      logger.flush?.();
      process.exit(SIGNAL_EXIT[signal] ?? 1);
    }
    // not ready from now on (GET /readyz answers 503), so a balancer takes the instance out
    // of rotation before its connections close; devices and the API are served meanwhile
    server.beginStopping();
    const stop = () => {
      phase = 'stopping';
      const limit = setTimeout(() => {
        logger.error(`the stop did not finish within ${STOP_LIMIT_MS / 1000} s: exiting without it`, { waitingFor: server.stopWaitingFor ?? 'nothing' });
        logger.flush?.();
        process.exit(1);
      }, STOP_LIMIT_MS);
      limit.unref();
      // the counts of repeated full-disk lines still held are written before the exit
      // the mark waits for the token line's write: at most 2 s (a stdout pipe nobody reads)
      const written = Promise.race([startup.written, new Promise<void>((resolve) => setTimeout(resolve, 2_000).unref())]);
      void Promise.all([server.stop(), written]).then(() => {
        // the stop's end said, as its start is: only the exit code told it finished (QA)
        logger.info('stopped');
        logger.flush?.();
        process.exit(0);
      });
    };
    if (config.drainSeconds === 0) {
      logger.info(`${signal}: stopping`);
      return stop();
    }
    phase = 'draining';
    logger.info(`${signal}: draining for ${config.drainSeconds} s before stopping (/readyz answers 503; signal again to stop now)`);
    const timer = setTimeout(stop, config.drainSeconds * 1000);
    endDrain = () => (clearTimeout(timer), stop());
  };
  process.on('SIGINT', () => shutdown('SIGINT'));
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  // SIGHUP reads the operator's TLS files again (what a renewal hook sends: certbot's
  // --deploy-hook, `systemctl reload`), as daemons do; its default action ended the process
  process.on('SIGHUP', () => {
    if (phase !== 'serving') return;
    logger.info('SIGHUP: reading the TLS certificate files again');
    void server.reloadTlsFiles();
  });
}

/**
 * The start-up line naming the MQTT broker. An external broker is named by its host alone,
 * read after `redactUrl`: a URL parser reads `mqtt://operator:123/en@host` as host
 * `operator:123`, and the line showed the password's first characters.
 */
export function brokerLine(config: Pick<UpdraftConfig, 'mqtt'>, port: number | undefined): string {
  if (config.mqtt.url) return `updraft: MQTT via external broker ${new URL(redactUrl(config.mqtt.url)).host} (shared subscriptions, group ${config.mqtt.shareGroup})\n`;
  return `updraft: MQTT broker on mqtt://${config.mqtt.host}:${port}\n`;
}
