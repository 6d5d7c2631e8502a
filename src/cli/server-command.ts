/** `updraft server`: runs the whole system with embedded defaults (what `npm start` runs). */
import type { Command } from 'commander';
import { loadConfig } from '../config/load-config.ts';
import { unknownEnvironment } from '../config/environment.ts';
import { SETTINGS } from '../config/schema.ts';
import { redactedConfig, settingsMarkdown } from '../config/load-config.ts';
import { createLogger } from '../util/logger.ts';

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
    const config = loadConfig({ ...(typeof opts.config === 'string' ? { file: opts.config } : {}), env: process.env, flags });
    const logger = createLogger({ level: config.logLevel, format: config.logFormat });
    for (const w of unknownEnvironment(process.env)) logger.warn(w);
    const { UpdraftServer } = await import('../server/updraft-server.ts');
    const server = new UpdraftServer(config, { logger });
    await server.start();
    const out = process.stdout;
    out.write(config.mqtt.url ? `updraft: MQTT via external broker ${new URL(config.mqtt.url).host} (shared subscriptions, group ${config.mqtt.shareGroup})\n` : `updraft: MQTT broker on mqtt://${config.mqtt.host}:${server.broker.port}\n`);
    out.write(`updraft: HTTP API and downloads on ${config.http.tls === 'on' ? 'https' : 'http'}://${config.http.host}:${server.http.port} (devices use ${server.publicUrl})\n`);
    if (server.broker.tlsPort !== undefined) out.write(`updraft: MQTT over TLS with client certificates on mqtts://${config.mqtt.host}:${server.broker.tlsPort} (CA ${config.dataDir}/pki/ca.crt)\n`);
    out.write(`updraft: software signing key ${server.security.signingKey.keyId}; provision agents with ${server.security.publicKeyFile}\n`);
    out.write(`updraft: data in ${config.dataDir}\n`);
    if (server.tokenCreated) {
      out.write(`updraft: operator token (shown once; also in ${config.dataDir}/operator-token, mode 0600): ${server.operatorToken}\n`);
    }
    let stopping = false;
    let endDrain: (() => void) | undefined;
    const shutdown = (signal: string) => {
      if (stopping) {
        // a second signal during the drain: stop now
        endDrain?.();
        return;
      }
      stopping = true;
      // not ready from now on (GET /readyz answers 503), so a balancer takes the instance out
      // of rotation before its connections close; devices and the API are served meanwhile
      server.beginStopping();
      const drain = config.drainSeconds * 1000;
      if (drain > 0) logger.info(`${signal}: draining for ${config.drainSeconds} s before stopping (/readyz answers 503; signal again to stop now)`);
      else logger.info(`${signal}: stopping`);
      void new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, drain);
        endDrain = () => (clearTimeout(timer), resolve());
      })
        .then(() => server.stop())
        .then(() => process.exit(0));
    };
    process.on('SIGINT', () => shutdown('SIGINT'));
    process.on('SIGTERM', () => shutdown('SIGTERM'));
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
