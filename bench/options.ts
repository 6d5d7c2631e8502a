/**
 * `npm run bench`'s options, checked whole before anything starts: a bad value is one line
 * (`bench: error: ...`) and exit 2 (bench/run.ts), never a stack trace, a server started for
 * nothing, or a value silently dropped (a run that measured nothing and exited 0).
 */
import { parseArgs } from 'node:util';
import { wholeNumber } from '../src/util/number-text.ts';
import { redactUrl } from '../src/util/redact-url.ts';

/**
 * A bad option: run.ts prints its message on one line and exits 2. The message never holds a
 * password: a value it quotes may be the --db URL put in the wrong place (`--external
 * postgres://app:pw@host/db`, without --db, was printed whole as an unexpected argument).
 */
export class BenchUsageError extends Error {
  constructor(message: string) {
    super(redactUrl(message));
  }
}

export interface BenchOptions {
  full: boolean;
  /** Connected fleet sizes, smallest first, each once (`--sizes 0`: none). */
  sizes: number[];
  /** Devices of the cycling rollout (0: none). */
  rollout: number;
  /** Cycling rollout: devices online at once. */
  concurrency: number;
  /** The jobs' in-flight window (`maxInFlight`); undefined for none (`--in-flight 0`). */
  inFlight: number | undefined;
  storeShadows: number;
  simProcesses: number;
  simNice: number;
  repeat: number;
  profile: boolean;
  alloc: boolean;
  external: boolean;
  db: string | undefined;
  out: string;
}

/** The limits `updraft sim` itself puts on what the bench passes it (src/cli/sim-command.ts). */
const SIM_MAX_PROCESSES = 64;
const SIM_MAX_CONCURRENCY = 100_000;
const SIM_MAX_DEVICES = 10_000_000;

function int(value: string, name: string, min: number, max: number): number {
  const n = wholeNumber(value, min, max);
  if (n === undefined) throw new BenchUsageError(`--${name} must be an integer from ${min} to ${max}, got '${value}'`);
  return n;
}

/** Parses and checks `npm run bench -- ...` (argv without node and the script). */
export function parseBenchArgs(argv: string[]): BenchOptions {
  let values;
  let tokens;
  try {
    ({ values, tokens } = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      tokens: true,
      options: {
        full: { type: 'boolean', default: false },
        sizes: { type: 'string' },
        rollout: { type: 'string' },
        concurrency: { type: 'string', default: '5000' },
        'in-flight': { type: 'string', default: '1000' },
        'store-shadows': { type: 'string' },
        'sim-processes': { type: 'string', default: '1' },
        'sim-nice': { type: 'string', default: '10' },
        repeat: { type: 'string', default: '1' },
        profile: { type: 'boolean', default: false },
        alloc: { type: 'boolean', default: false },
        external: { type: 'boolean', default: false },
        db: { type: 'string' },
        out: { type: 'string', default: 'bench-results' },
      },
    }));
  } catch (err) {
    // node's own message (unknown option, a value missing), without its stack and error code
    throw new BenchUsageError((err as Error).message.split('\n')[0]!);
  }
  // parseArgs keeps the last of a repeated option: `--sizes 200 --sizes 300` would run 300 alone
  const seen = new Set<string>();
  for (const t of tokens!) {
    if (t.kind !== 'option') continue;
    if (seen.has(t.name)) throw new BenchUsageError(`--${t.name} is given more than once; give it once${t.name === 'sizes' ? ' (several sizes: --sizes 200,300)' : ''}`);
    seen.add(t.name);
  }
  const full = values.full!;
  const sizesText = values.sizes ?? (full ? '5000,15000' : '1000,5000');
  // smallest first: the last size is the largest, the headline's and the ceiling's (run.ts)
  const sizes = [...new Set(sizesText.split(',').map((s) => int(s.trim(), 'sizes', 0, SIM_MAX_DEVICES)))].filter((n) => n > 0).sort((a, b) => a - b);
  const rollout = int(values.rollout ?? (full ? '100000' : '0'), 'rollout', 0, SIM_MAX_DEVICES);
  const concurrency = int(values.concurrency!, 'concurrency', 1, SIM_MAX_CONCURRENCY);
  const inFlight = int(values['in-flight']!, 'in-flight', 0, SIM_MAX_DEVICES);
  const storeShadows = int(values['store-shadows'] ?? '1000000', 'store-shadows', 0, 100_000_000);
  const simProcesses = int(values['sim-processes']!, 'sim-processes', 1, SIM_MAX_PROCESSES);
  const simNice = int(values['sim-nice']!, 'sim-nice', 0, 19);
  const repeat = int(values.repeat!, 'repeat', 1, 1000);
  // `updraft sim --processes N` refuses a fleet of fewer than N devices: say so before a server starts
  const fleets = [...sizes, ...(rollout > 0 ? [rollout] : [])];
  const smallest = Math.min(...fleets);
  if (simProcesses > 1 && smallest < simProcesses) throw new BenchUsageError(`--sim-processes ${simProcesses} is more than the ${smallest} devices of the smallest fleet`);
  if (sizes.length === 0 && rollout === 0 && storeShadows === 0) throw new BenchUsageError('nothing to measure: --sizes 0, --rollout 0 and --store-shadows 0');
  if (values.db !== undefined && !values.external) throw new BenchUsageError('--db goes with --external');
  if (values.db === '') throw new BenchUsageError('--db must be a PostgreSQL URL');
  if (values.out === '') throw new BenchUsageError('--out must be a directory');
  return {
    full,
    sizes,
    rollout,
    concurrency,
    inFlight: inFlight > 0 ? inFlight : undefined,
    storeShadows,
    simProcesses,
    simNice,
    repeat,
    profile: values.profile!,
    alloc: values.alloc!,
    external: values.external!,
    db: values.db,
    out: values.out!,
  };
}
