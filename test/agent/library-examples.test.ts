/**
 * The code examples of the agent library (the `@example` of src/agent/index.ts, and docs/agent.md's
 * "Your own installer" and "Library API" sections) compile as written, imported the way a
 * user imports them: `updraft/agent` resolved through package.json "exports" from a project
 * that has Updraft in its node_modules, type-checked by the repository's TypeScript with its
 * compiler options. QA found the index example using readFileSync unimported, and the
 * installer example throwing an UpdraftError that `updraft/agent` did not export (TS2305).
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';

const REPO = path.resolve(import.meta.dirname, '../..');
const run = promisify(execFile);

/** The ```ts blocks of `markdown`. */
function tsBlocks(markdown: string): string[] {
  return [...markdown.matchAll(/^```ts\n([\s\S]*?)^```$/gm)].map((m) => m[1]!);
}

/** The `##` section of `markdown` with this title, up to the next `##`. */
function section(markdown: string, title: string): string {
  const start = markdown.indexOf(`\n## ${title}\n`);
  assert.notEqual(start, -1, `section "${title}" not found`);
  const end = markdown.indexOf('\n## ', start + 1);
  return markdown.slice(start, end === -1 ? undefined : end);
}

/** The ```ts blocks of a doc comment, without its ` * ` margin. */
function docCommentBlocks(source: string): string[] {
  const comment = /\/\*\*([\s\S]*?)\*\//.exec(source)?.[1] ?? '';
  return tsBlocks(comment.split('\n').map((l) => l.replace(/^ \* ?| \*$/, '')).join('\n'));
}

describe('the agent library examples', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'updraft-examples-'));
    // a user's project: Updraft installed, Node.js types, ES modules
    await mkdir(path.join(dir, 'node_modules'));
    await symlink(REPO, path.join(dir, 'node_modules', 'updraft'), 'dir');
    await symlink(path.join(REPO, 'node_modules', '@types'), path.join(dir, 'node_modules', '@types'), 'dir');
    await writeFile(path.join(dir, 'package.json'), JSON.stringify({ type: 'module', private: true }));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('compile as written against updraft/agent', async () => {
    const index = docCommentBlocks(await readFile(path.join(REPO, 'src/agent/index.ts'), 'utf8'));
    const doc = await readFile(path.join(REPO, 'docs/agent.md'), 'utf8');
    const installer = tsBlocks(section(doc, 'Your own installer'));
    const library = tsBlocks(section(doc, 'Library API'));
    // found at all: a changed fence or title must not turn this into a test of nothing
    assert.equal(index.length, 1, 'the index example');
    assert.equal(installer.length, 1, 'the installer example');
    assert.ok(library.length >= 1, 'the library API example');
    const examples = [...index.map((c) => ['index', c]), ...installer.map((c) => ['installer', c]), ...library.map((c) => ['library', c])];
    const files = await Promise.all(
      examples.map(async ([where, code], i) => {
        const file = `${where}-${i}.ts`;
        await writeFile(path.join(dir, file), code!);
        return file;
      }),
    );
    const { compilerOptions } = JSON.parse(await readFile(path.join(REPO, 'tsconfig.json'), 'utf8')) as { compilerOptions: Record<string, unknown> };
    await writeFile(path.join(dir, 'tsconfig.json'), JSON.stringify({ compilerOptions, files }));
    const tsc = path.join(REPO, 'node_modules', 'typescript', 'bin', 'tsc');
    const result = await run(process.execPath, [tsc, '--noEmit', '-p', dir], { cwd: dir }).then(
      () => ({ code: 0, out: '' }),
      (err: { code?: number; stdout?: string; stderr?: string }) => ({ code: err.code ?? -1, out: `${err.stdout ?? ''}${err.stderr ?? ''}` }),
    );
    const listing = files.map((f, i) => `--- ${f}\n${examples[i]![1]}`).join('\n');
    assert.equal(result.code, 0, `${result.out}\n${listing}`);
  });
});
