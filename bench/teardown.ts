/**
 * What a bench run must undo however it ends: the children it started, the temporary
 * directories it made and the databases it made on the server --db names, which outlive it
 * (external.ts). A server's data dir holds the fleet's secrets; `updraft sim` stopped by
 * SIGINT or SIGTERM stops its own processes and removes its /tmp/updraft-sim-*, which holds
 * them too. Each registers as it is made and is forgotten once its own code has undone it;
 * run.ts undoes what is left, newest first, when the run fails or a signal stops it (a
 * simulator before its server, a server before its data dir). Should the process exit with
 * some left anyway (a second signal, an exit mid-await), each gets its quick version: a
 * SIGTERM, a synchronous rm, a line naming the database for the operator to drop.
 */

interface Undo {
  undo(): Promise<void>;
  atExit(): void;
}

// process-wide by nature: what this process started, whichever module started it
const pending = new Set<Undo>();
let hooked = false;

/** Registers what undoes something just made: `undo` when the run ends early, `atExit` if the process exits first. Returns forget(). */
export function mustUndo(undo: () => Promise<void>, atExit: () => void): () => void {
  if (!hooked) {
    hooked = true;
    process.on('exit', () => {
      for (const u of [...pending].reverse()) {
        try {
          u.atExit();
        } catch {
          // already gone
        }
      }
    });
  }
  const entry = { undo, atExit };
  pending.add(entry);
  return () => void pending.delete(entry);
}

/**
 * Undoes everything still registered, newest first; a failure to undo one does not stop the
 * others. Each stays registered until its undo has ended: an exit meanwhile (a second signal)
 * still gets its quick version (a database being dropped is then named, teardown or not).
 */
export async function undoAll(): Promise<void> {
  for (const u of [...pending].reverse()) {
    await u.undo().catch(() => undefined);
    pending.delete(u);
  }
}
