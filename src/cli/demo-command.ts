/** `updraft demo --devices 50`: the whole pattern for simulated devices, one summary line. */
import type { Command } from 'commander';
import { UpdraftError } from '../errors.ts';
import { probability, wholeNumber } from '../util/number-text.ts';

/** Adds `demo`. */
export function addDemoCommand(program: Command): void {
  program
    .command('demo')
    .description('run the whole update pattern for N simulated devices (real MQTT and HTTP on free ports)')
    .option('--devices <n>', 'number of simulated devices', '50')
    .option('--artifact-kb <n>', 'size of the demo artifact in KiB', '256')
    .option('--timeout <s>', 'give up after this many seconds (a whole number from 1 to 86400)', '120')
    .option('--failure-rate <p>', 'probability (0..1) that a simulated install fails its health check', '0')
    .action(async (opts: { devices: string; artifactKb: string; timeout: string; failureRate: string }) => {
      const devices = wholeNumber(opts.devices, 1, 20_000);
      if (devices === undefined) throw new UpdraftError('BAD_REQUEST', '--devices must be an integer from 1 to 20000');
      const kb = wholeNumber(opts.artifactKb, 1, Number.MAX_SAFE_INTEGER);
      if (kb === undefined) throw new UpdraftError('BAD_REQUEST', '--artifact-kb must be a positive integer');
      // '' is refused, not read as 0
      const failureRate = probability(opts.failureRate);
      if (failureRate === undefined) throw new UpdraftError('BAD_REQUEST', '--failure-rate must be a number from 0 to 1');
      // checked before the demo's server starts ('abc', 0 and -5 gave up at once, "within NaN s")
      const timeout = wholeNumber(opts.timeout, 1, 86_400);
      if (timeout === undefined) throw new UpdraftError('BAD_REQUEST', '--timeout must be a whole number of seconds from 1 to 86400');
      const { runDemo } = await import('../demo/run-demo.ts'); // the whole server: loaded only to run
      const r = await runDemo({ devices, artifactBytes: kb * 1024, timeoutMs: timeout * 1000, failureRate });
      for (const f of r.failures.slice(0, 10)) process.stderr.write(`demo: ${f.deviceId}: ${f.reason}\n`);
      process.stdout.write(`demo: ${r.updated}/${r.devices} devices updated to ${r.version} in ${r.seconds.toFixed(1)} s\n`);
      process.exitCode = r.updated === r.devices ? 0 : 1;
    });
}
