/** A JSON file an option names (`--file`, `--devices-file`), read with errors that name the file. */
import { readFile } from 'node:fs/promises';
import { UpdraftError } from '../errors.ts';

/** The parsed contents of `file`; BAD_REQUEST naming it when it cannot be read or is not JSON. The caller checks the shape. */
export async function readJsonFile(file: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new UpdraftError('BAD_REQUEST', `cannot read ${file}: ${code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'it is a directory' : (err as Error).message}`);
  }
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new UpdraftError('BAD_REQUEST', `${file} is not valid JSON: ${(err as Error).message}`);
  }
}
