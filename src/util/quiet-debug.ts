/**
 * Disabled `debug` loggers that cost nothing per call, for the processes the `updraft`
 * command runs (server, simulator, agent daemon).
 *
 * mqtt-packet (the MQTT parser and writer under aedes and mqtt.js) calls a `debug` logger
 * about 190 times per fleet update, and `debug`'s logger is `function debug(...args)`: its
 * rest parameter allocates an array at every call, before it checks whether the namespace is
 * enabled. Disabled, those arrays were the largest single allocation site of both the server
 * and the simulator in the thirty-eighth session's allocation profile (6.4 and 7.8 KB per
 * update; about 1% of their CPU with the collection they cause).
 *
 * `quietDisabledDebug()` wraps `debug`'s factory in the module cache, before any library
 * that logs through it is loaded: a logger whose namespace is not enabled when it is created
 * (by `DEBUG`, read at start as always) is a function with an empty body. `DEBUG=mqtt-packet*`
 * (or any namespace) still turns a logger on, as long as it is set when the process starts;
 * `debug.enable()` called later no longer reaches a logger made while its namespace was off,
 * which nothing in Updraft does. The agent library is not affected: only the command line
 * (src/cli/main.ts) calls this, so an application embedding the agent keeps its own `debug`.
 */
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

type Factory = ((namespace: string) => DebugLogger) & Record<string, unknown>;
interface DebugLogger {
  (...args: unknown[]): void;
  enabled: boolean;
  namespace: string;
  extend: (sub: string, delimiter?: string) => DebugLogger;
  log?: unknown;
}

let installed = false;

/** Makes the loggers of namespaces disabled at their creation free to call. Idempotent. */
export function quietDisabledDebug(): void {
  if (installed) return;
  installed = true;
  let id: string;
  try {
    id = require.resolve('debug');
  } catch {
    return; // no `debug` installed: nothing logs through it
  }
  const original = require(id) as Factory;
  const quiet = makeQuiet(original);
  const cached = require.cache[id];
  if (cached) cached.exports = quiet;
}

/** `debug`'s factory, with disabled loggers replaced by empty functions (`quietDisabledDebug`). */
export function makeQuiet(original: Factory): Factory {
  const make = (namespace: string): DebugLogger => {
    const logger = original(namespace);
    if (logger.enabled) return logger;
    const off = (() => undefined) as unknown as DebugLogger;
    off.enabled = false;
    off.namespace = namespace;
    off.extend = (sub: string, delimiter = ':') => make(namespace + delimiter + sub);
    return off;
  };
  // the factory's own API (enable, disable, enabled, formatters, ...) stays the original's
  const quiet = Object.assign(make, original) as unknown as Factory;
  quiet.default = quiet;
  return quiet;
}
