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

/**
 * The libraries whose `debug` is wrapped: `debug` is resolved from where each of them is (it
 * is their dependency, not Updraft's; a tree with two copies has each wrapped).
 */
const LOGGING_LIBRARIES = ['mqtt-packet', 'mqtt'];

/** Makes the loggers of namespaces disabled at their creation free to call. Idempotent. */
export function quietDisabledDebug(): void {
  if (installed) return;
  installed = true;
  const ids = new Set<string>();
  for (const library of LOGGING_LIBRARIES) {
    try {
      ids.add(createRequire(require.resolve(library)).resolve('debug'));
    } catch {
      // the library or its `debug` is not installed: nothing logs through it
    }
  }
  for (const id of ids) {
    const original = require(id) as Factory;
    const cached = require.cache[id];
    if (cached) cached.exports = makeQuiet(original);
  }
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
