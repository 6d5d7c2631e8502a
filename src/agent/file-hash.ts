/** Streaming SHA-256 of a file, for verifying downloads and installed slots. */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';

/** Size and lower-case hex SHA-256 of a file, read as a stream (constant memory). */
export async function hashFile(file: string, signal?: AbortSignal): Promise<{ size: number; sha256: string }> {
  const hash = createHash('sha256');
  let size = 0;
  for await (const chunk of createReadStream(file, { signal })) {
    size += (chunk as Buffer).length;
    hash.update(chunk as Buffer);
  }
  return { size, sha256: hash.digest('hex') };
}
