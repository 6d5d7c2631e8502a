/**
 * Node's process warnings go through the server's logger (and the agent daemon's): with
 * `--log-format json` every stderr line stays JSON. Soak QA (2026-12-06): the AWS SDK's NodeVersionSupportWarning,
 * printed by Node's own handler at each start with `--blob s3`, was nine lines of plain text
 * in a JSON log. Real `updraft server` processes; a preload emits a two-line warning when the
 * test asks (SIGUSR2), so the warning comes after the start, whatever the Node version.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { eventually, startCli, type CliProcess } from '../helpers/cli.ts';

const LOCAL = ['--mqtt-tls-port', '-1', '--mqtt-host', '127.0.0.1', '--http-host', '127.0.0.1', '--mqtt-port', '0', '--http-port', '0'];
const PRELOAD = `process.on('SIGUSR2', () => process.emitWarning('A notice from a library:\\n  upgrade   soon.', { type: 'LibraryNoticeWarning', code: 'LIB_NOTICE', detail: 'Do this\\n  next.' }));\n`;

/** Starts a server with the preload, sends it SIGUSR2 once it serves, and returns its stderr once `done` says the warning was handled. */
async function serverWarning(dir: string, extra: string[], nodeOptions: string, done: (stderr: string) => boolean): Promise<{ stderr: string; proc: CliProcess }> {
  const dataDir = await mkdtemp(path.join(dir, 'data-'));
  const proc = startCli(['server', '--data-dir', dataDir, ...LOCAL, ...extra], { env: { NODE_OPTIONS: nodeOptions } });
  let stderr = '';
  proc.child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  try {
    await proc.waitFor(/updraft: data in/, 60_000);
    proc.child.kill('SIGUSR2');
    await eventually(async () => (done(stderr) ? true : undefined), 30_000, 'the warning handled');
  } catch (err) {
    await proc.kill();
    throw err;
  }
  return { stderr, proc };
}

describe("Node's process warnings in the server's log", () => {
  let dir: string;
  let preload: string;
  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'updraft-warnings-'));
    preload = path.join(dir, 'warn-on-usr2.mjs');
    await writeFile(preload, PRELOAD);
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('with --log-format json, a warning is one JSON line at warn, and every stderr line is JSON', { timeout: 120_000 }, async () => {
    const { stderr, proc } = await serverWarning(dir, ['--log-format', 'json'], `--import ${preload}`, (s) => s.includes('LibraryNoticeWarning'));
    assert.equal(await proc.kill(), 0);
    const lines = stderr.trimEnd().split('\n');
    const parsed = lines.map((l) => {
      try {
        return JSON.parse(l) as Record<string, unknown>;
      } catch {
        return assert.fail(`not a JSON line: ${l}\n--- stderr:\n${stderr}`);
      }
    });
    const warning = parsed.filter((l) => String(l.msg).includes('LibraryNoticeWarning'));
    assert.equal(warning.length, 1, stderr);
    assert.equal(warning[0]!.level, 'warn');
    assert.equal(warning[0]!.msg, 'LibraryNoticeWarning: A notice from a library: upgrade   soon.');
    assert.equal(warning[0]!.code, 'LIB_NOTICE');
    // what it says to do, which Node prints on a line of its own (review)
    assert.equal(warning[0]!.detail, 'Do this next.');
  });

  it("leaves the warnings to Node's handler when the operator asked it for a file (--redirect-warnings) or stacks (--trace-warnings)", { timeout: 180_000 }, async () => {
    const file = path.join(dir, 'warnings.log');
    const redirected = await serverWarning(dir, ['--log-format', 'json'], `--import ${preload} --redirect-warnings=${file}`, () => existsSync(file) && readFileSync(file, 'utf8').includes('LibraryNoticeWarning'));
    assert.equal(await redirected.proc.kill(), 0);
    assert.match(readFileSync(file, 'utf8'), /LibraryNoticeWarning: A notice from a library:/);
    assert.doesNotMatch(redirected.stderr, /LibraryNoticeWarning/, 'written to the file, not the log');
    // done once Node has written the stack (its lines may come in a later chunk)
    const traced = await serverWarning(dir, [], `--import ${preload} --trace-warnings`, (s) => /LibraryNoticeWarning[\s\S]*\n\s+at /.test(s));
    assert.equal(await traced.proc.kill(), 0);
    assert.match(traced.stderr, /\(node:\d+\) \[LIB_NOTICE\] LibraryNoticeWarning: A notice from a library:[\s\S]*\n\s+at /, 'its stack, as Node writes it');
  });

  it('in the text format a warning is one log line, not Node\'s (node:PID) lines', { timeout: 120_000 }, async () => {
    const { stderr, proc } = await serverWarning(dir, [], `--import ${preload}`, (s) => s.includes('LibraryNoticeWarning'));
    assert.equal(await proc.kill(), 0);
    assert.match(stderr, /^\S+ WARN {2}LibraryNoticeWarning: "?A notice from a library: upgrade {3}soon\.\s.*code=LIB_NOTICE detail="Do this next\."$/m);
    assert.doesNotMatch(stderr, /\(node:\d+\)/);
  });

  it('with --no-warnings, Node prints none and neither does the server', { timeout: 120_000 }, async () => {
    // the operator silenced them: no handler of Node's, none added. Done once the signal is
    // surely handled: a second process warning of the preload's own marks it
    const marker = path.join(dir, 'marker.mjs');
    await writeFile(marker, `process.on('SIGUSR2', () => setTimeout(() => process.stderr.write('usr2 handled\\n'), 200));\n`);
    const { stderr, proc } = await serverWarning(dir, ['--log-format', 'json'], `--no-warnings --import ${preload} --import ${marker}`, (s) => s.includes('usr2 handled'));
    assert.equal(await proc.kill(), 0);
    assert.doesNotMatch(stderr, /LibraryNoticeWarning|A notice from a library/);
  });

  it('the agent daemon logs them the same way', { timeout: 120_000 }, async () => {
    // a broker that refuses: the daemon runs on, retrying, which is all this needs
    const agent = startCli(['agent', '--device', 'warn-1', '--install-dir', path.join(dir, 'agent'), '--broker', 'mqtt://127.0.0.1:1', '--password', 'x', '--insecure-allow-unsigned', '--log-format', 'json'], { env: { NODE_OPTIONS: `--import ${preload}` } });
    let stderr = '';
    agent.child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    try {
      await agent.waitFor(/warn-1: starting/, 60_000);
      agent.child.kill('SIGUSR2');
      await eventually(async () => (stderr.includes('LibraryNoticeWarning') ? true : undefined), 30_000, 'the warning handled');
    } finally {
      await agent.kill();
    }
    const lines = stderr.trimEnd().split('\n').map((l) => {
      try {
        return JSON.parse(l) as Record<string, unknown>;
      } catch {
        return assert.fail(`not a JSON line: ${l}\n--- stderr:\n${stderr}`);
      }
    });
    const warning = lines.filter((l) => String(l.msg).includes('LibraryNoticeWarning'));
    assert.deepEqual(warning.map((l) => [l.level, l.component, l.msg, l.code]), [['warn', 'agent', 'LibraryNoticeWarning: A notice from a library: upgrade   soon.', 'LIB_NOTICE']]);
  });
});
