/** A JSON file an option names (`--file`, `--devices-file`), read with errors that name the file. */
import { readFile } from 'node:fs/promises';
import { UpdraftError } from '../errors.ts';
import { repeatedKey, repeatedKeyMessage } from '../protocol/json-keys.ts';

/** The parsed contents of `file`; BAD_REQUEST naming it when it cannot be read, is not JSON or repeats a key in an object. The caller checks the shape. */
export async function readJsonFile(file: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new UpdraftError('BAD_REQUEST', `cannot read ${file}: ${code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'it is a directory' : (err as Error).message}`);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new UpdraftError('BAD_REQUEST', `${file} is not valid JSON: ${(err as Error).message}`);
  }
  // JSON.parse keeps a repeated key's last value: refused, as the server refuses it in a body
  const repeated = repeatedKey(text);
  if (repeated !== undefined) throw new UpdraftError('BAD_REQUEST', repeatedKeyMessage(file, repeated));
  return value;
}
