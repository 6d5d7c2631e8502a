/**
 * Node's process warnings (`process.emitWarning`: deprecations, a listener leak, a library's
 * notice) written through the process's logger instead of Node's own handler. Node prints
 * each as `(node:PID) Warning: …` on stderr, which is the server's log: with `--log-format
 * json` such lines broke the promise that every line is a JSON object (the AWS SDK's
 * NodeVersionSupportWarning, printed at each start with `--blob s3`, is nine lines of plain
 * text: soak QA, 2026-12-06). Through the logger a warning is one line, at WARN, in the
 * chosen format, with the warning's name and code as fields.
 *
 * Only Node's default handler is replaced: with `--no-warnings` (or NODE_NO_WARNINGS=1) Node
 * installs none, and none is added here either, so the operator's choice to silence them holds.
 */
import type { Logger } from './logger.ts';

/** The name of the listener Node installs to print warnings (lib/internal/process/warning.js). */
const NODE_HANDLER = 'onWarning';

/**
 * Routes process warnings to `logger` (see above). Returns the undo: Node's handler back,
 * ours removed (for tests, and a process that hands its stderr back).
 */
export function logProcessWarnings(logger: Logger): () => void {
  const nodes = process.listeners('warning').filter((l) => l.name === NODE_HANDLER);
  if (nodes.length === 0) return () => undefined;
  const ours = (w: Error & { code?: string }) => {
    // a warning's text may span lines (the AWS SDK's does): one line, its words kept
    const message = w.message.replace(/\s*\n\s*/g, ' ').trim();
    logger.warn(`${w.name}: ${message}`, w.code !== undefined ? { code: w.code } : undefined);
  };
  for (const l of nodes) process.off('warning', l);
  process.on('warning', ours);
  return () => {
    process.off('warning', ours);
    for (const l of nodes) process.on('warning', l);
  };
}
