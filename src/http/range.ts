/** HTTP Range (RFC 9110 §14): one `bytes=` range, which is what resumable downloads send. */
import type { ByteRange } from '../artifacts/blob-store.ts';

/**
 * Parses a Range header against a resource of `size` bytes: undefined for no (or an
 * ignorable, multi-range) header, 'unsatisfiable' for a range past the end.
 */
export function parseRange(header: string | undefined, size: number): ByteRange | 'unsatisfiable' | undefined {
  if (!header) return undefined;
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!m) return undefined; // multiple or malformed ranges: serve the whole body (allowed by the RFC)
  const [, a, b] = m;
  if (a === '' && b === '') return undefined;
  if (a === '') {
    const n = Number(b);
    if (n === 0) return 'unsatisfiable';
    return { start: Math.max(0, size - n), end: size - 1 };
  }
  const start = Number(a);
  const end = b === '' ? size - 1 : Math.min(Number(b), size - 1);
  if (start >= size || start > end) return 'unsatisfiable';
  return { start, end };
}
