/**
 * Listening on a node server without leaving the listen's own listeners behind. A listen taken
 * with `once('error')` and the `listen` callback (a `once('listening')`) keeps the error
 * listener after it succeeds: an error the server emits later goes to it and rejects a promise
 * long settled, so it vanishes without a word; a failed listen keeps the 'listening' one. Here
 * each outcome removes the other's listener, and the caller then attaches what a listening
 * server's errors need (`HttpServer`, the embedded broker: a line at error level).
 */
import type net from 'node:net';

/** Listens on `server`; rejects with `refused(err)` when it cannot, and leaves no listener of its own either way. */
export function listenOn(server: net.Server, options: net.ListenOptions, refused: (err: NodeJS.ErrnoException) => Error): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const failed = (err: NodeJS.ErrnoException) => {
      server.removeListener('listening', listening);
      reject(refused(err));
    };
    const listening = () => {
      server.removeListener('error', failed);
      resolve();
    };
    server.once('error', failed);
    server.once('listening', listening);
    server.listen(options);
  });
}
