/**
 * The `updraft` command loads what the command it runs needs, not the whole system: the
 * operator commands (`job list`, `device show`, `--help`) start without the broker, the
 * stores, the S3 client, mqtt.js or node-forge, which only the commands that run a server,
 * an agent, a simulator or a CA load. What a run loaded is read from require's cache at its
 * exit (test/cli/support/loaded-packages.mjs), not timed.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const BIN = path.resolve(here, '../../bin/updraft.js');
const PRELOAD = path.join(here, 'support', 'loaded-packages.mjs');
/** Packages of the server, the agent and the PKI: none of them is needed to call the API. */
const HEAVY = ['mqtt', 'pg', 'better-sqlite3', '@aws-sdk/client-s3', 'node-forge', 'mqemitter', 'aedes-persistence'];

describe('updraft command start-up', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'updraft-cli-startup-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  /** Runs `updraft ...args`; the npm packages it loaded, and its exit code and stderr. */
  async function loaded(args: string[]): Promise<{ packages: string[]; code: number | null; stderr: string }> {
    const out = path.join(dir, `loaded-${Math.random().toString(36).slice(2)}.json`);
    const child = spawn(process.execPath, ['--import', PRELOAD, BIN, ...args], { cwd: dir, env: { ...process.env, UPDRAFT_LOADED_OUT: out } });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    child.stdout.resume();
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    return { packages: JSON.parse(await readFile(out, 'utf8')) as string[], code, stderr };
  }

  it('calls the API, and shows its help, without loading the server, the agent or the PKI', async () => {
    for (const args of [['--help'], ['job', 'list', '--server', 'http://127.0.0.1:9', '--token', 't'], ['device', 'show', 'dev-1', '--server', 'http://127.0.0.1:9', '--token', 't'], ['server', '--help'], ['agent', '--help']]) {
      const r = await loaded(args);
      assert.ok(r.packages.includes('commander'), `${args.join(' ')}: the list holds what was loaded (${r.packages.join(', ')})`);
      const heavy = r.packages.filter((p) => HEAVY.includes(p));
      assert.deepEqual(heavy, [], `updraft ${args.join(' ')} loaded ${heavy.join(', ')}`);
    }
  });

  it('loads them for the commands that need them', async () => {
    const r = await loaded(['ca', 'init', '--data-dir', path.join(dir, 'data')]);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(r.packages.includes('node-forge'), `ca init loaded node-forge (${r.packages.join(', ')})`);
  });
});
