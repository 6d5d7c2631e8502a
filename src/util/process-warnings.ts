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
 * Nor is it replaced when the operator asked Node for what only its handler does: a file for
 * them (`--redirect-warnings`, NODE_REDIRECT_WARNINGS) or their stacks (`--trace-warnings`,
 * `--trace-deprecation`): Node writes them then, as it did before (review).
 */
import type { Logger } from './logger.ts';

/** The name of the listener Node installs to print warnings (lib/internal/process/warning.js). */
const NODE_HANDLER = 'onWarning';
/** Node's options whose work is done by its own handler alone. */
const HANDLER_OPTIONS = /(^|\s)--(redirect-warnings|trace-warnings|trace-deprecation)(=|\s|$)/;

/** Whether the operator asked Node for a warnings file or for their stacks (on the command line or in NODE_OPTIONS). */
function nodeHandlerAsked(): boolean {
  if (process.env.NODE_REDIRECT_WARNINGS) return true;
  return HANDLER_OPTIONS.test(process.execArgv.join(' ')) || HANDLER_OPTIONS.test(process.env.NODE_OPTIONS ?? '');
}

/**
 * Routes process warnings to `logger` (see above). Returns the undo: Node's handler back,
 * ours removed (for tests, and a process that hands its stderr back).
 */
export function logProcessWarnings(logger: Logger): () => void {
  const nodes = process.listeners('warning').filter((l) => l.name === NODE_HANDLER);
  if (nodes.length === 0 || nodeHandlerAsked()) return () => undefined;
  // a warning's text may span lines (the AWS SDK's does): one line, its words kept
  const oneLine = (text: string) => text.replace(/\s*\n\s*/g, ' ').trim();
  const ours = (w: Error & { code?: string; detail?: string }) => {
    const fields: Record<string, unknown> = {};
    if (w.code !== undefined) fields.code = w.code;
    // what the warning says to do (emitWarning's `detail`), which Node prints on a line of its own
    if (typeof w.detail === 'string') fields.detail = oneLine(w.detail);
    logger.warn(`${w.name}: ${oneLine(w.message)}`, Object.keys(fields).length > 0 ? fields : undefined);
  };
  for (const l of nodes) process.off('warning', l);
  process.on('warning', ours);
  return () => {
    process.off('warning', ours);
    for (const l of nodes) process.on('warning', l);
  };
}
