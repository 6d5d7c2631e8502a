/** `npm run bench`'s options: checked whole before anything starts, one line and exit 2 for a bad one. */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import { parseBenchArgs } from '../../bench/options.ts';
import { runNode } from '../helpers/cli.ts';

const RUN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../bench/run.ts');

/** Runs `npm run bench -- ...args` (bench/run.ts) to its end. */
const bench = (args: string[]) => runNode(['--import', 'tsx', RUN, ...args]);

describe('bench options', () => {
  it('refuses each bad value with one line', () => {
    for (const [args, message] of [
      [['--repeat', '0'], "--repeat must be an integer from 1 to 1000, got '0'"],
      [['--sim-nice', '20'], "--sim-nice must be an integer from 0 to 19, got '20'"],
      [['--sim-processes', '0'], "--sim-processes must be an integer from 1 to 64, got '0'"],
      [['--sizes', '100', '--sim-processes', '2', '--rollout', '1'], '--sim-processes 2 is more than the 1 devices of the smallest fleet'],
      [['--db', 'postgres://u@localhost/postgres'], '--db goes with --external'],
      [['--sizes', 'abc'], "--sizes must be an integer from 0 to 10000000, got 'abc'"],
      [['--sizes=-5'], "--sizes must be an integer from 0 to 10000000, got '-5'"],
      [['--sizes', '100,'], "--sizes must be an integer from 0 to 10000000, got ''"],
      [['--rollout', 'abc'], "--rollout must be an integer from 0 to 10000000, got 'abc'"],
      [['--store-shadows', 'abc'], "--store-shadows must be an integer from 0 to 100000000, got 'abc'"],
      [['--store-shadows=-1'], "--store-shadows must be an integer from 0 to 100000000, got '-1'"],
      [['--in-flight', 'abc'], "--in-flight must be an integer from 0 to 10000000, got 'abc'"],
      [['--in-flight=-5'], "--in-flight must be an integer from 0 to 10000000, got '-5'"],
      [['--concurrency', '0'], "--concurrency must be an integer from 1 to 100000, got '0'"],
      [['--sizes', '0', '--store-shadows', '0'], 'nothing to measure: --sizes 0, --rollout 0 and --store-shadows 0'],
      [['--bogus'], "Unknown option '--bogus'"],
      // a repeated option is refused, never one of its values silently dropped
      [['--sizes', '200', '--sizes', '300'], '--sizes is given more than once; give it once (several sizes: --sizes 200,300)'],
      [['--sizes=200', '--store-shadows', '0', '--sizes', '200'], '--sizes is given more than once; give it once (several sizes: --sizes 200,300)'],
      [['--repeat', '3', '--repeat', '5'], '--repeat is given more than once; give it once'],
      [['--full', '--full'], '--full is given more than once; give it once'],
    ] as const) {
      assert.throws(() => parseBenchArgs([...args]), (err: Error) => err.message === message, args.join(' '));
    }
  });

  it('never prints a password: a --db URL put in the wrong place is quoted without it', async () => {
    const url = 'postgres://bench:s3cret@localhost/postgres';
    const quoted = 'postgres://bench:***@localhost/postgres';
    for (const [args, message] of [
      [['--external', url], `Unexpected argument '${quoted}'. This command does not take positional arguments`],
      [['--external', '--sizes', url], `--sizes must be an integer from 0 to 10000000, got '${quoted}'`],
      [['--external', `--rollout=${url}`], `--rollout must be an integer from 0 to 10000000, got '${quoted}'`],
    ] as const) {
      assert.throws(() => parseBenchArgs([...args]), (err: Error) => err.message === message, args.join(' '));
      // the command prints that message and nothing else
      const r = await bench([...args]);
      assert.equal(r.code, 2, r.stderr);
      assert.equal(r.stderr, `bench: error: ${message}\n`);
    }
  });

  it('runs the connected sizes smallest first, each once, so the last is the largest (the headline, the ceiling)', () => {
    assert.deepEqual(parseBenchArgs(['--sizes', '300,100']).sizes, [100, 300]);
    assert.deepEqual(parseBenchArgs(['--sizes', '5000,1000,5000']).sizes, [1000, 5000]);
    assert.deepEqual(parseBenchArgs(['--sizes', '0', '--store-shadows', '10']).sizes, [], '--sizes 0: none');
    const o = parseBenchArgs([]);
    assert.deepEqual({ sizes: o.sizes, rollout: o.rollout, inFlight: o.inFlight, storeShadows: o.storeShadows, repeat: o.repeat }, { sizes: [1000, 5000], rollout: 0, inFlight: 1000, storeShadows: 1_000_000, repeat: 1 });
    assert.equal(parseBenchArgs(['--in-flight', '0']).inFlight, undefined, '0: no window');
    assert.deepEqual(parseBenchArgs(['--full']).sizes, [5000, 15000]);
    assert.equal(parseBenchArgs(['--full']).rollout, 100_000);
  });

  it('the command: a bad option is one line, exit 2, before anything starts', async () => {
    const out = await mkdtemp(path.join(os.tmpdir(), 'updraft-bench-opts-'));
    try {
      for (const args of [['--repeat', '0'], ['--bogus'], ['--sizes', '200', '--sizes', '300', '--store-shadows', '0'], ['--sizes', 'abc', '--store-shadows', '0'], ['--in-flight=-5', '--sizes', '100', '--store-shadows', '0']]) {
        const dir = path.join(out, 'results');
        const r = await bench([...args, '--out', dir]);
        assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
        assert.match(r.stderr, /^bench: error: [^\n]+\n$/, args.join(' '));
        assert.equal(r.stdout, '', 'nothing ran');
        assert.equal(existsSync(dir), false, 'not even the results directory was made');
      }
    } finally {
      await rm(out, { recursive: true, force: true });
    }
  });
});
