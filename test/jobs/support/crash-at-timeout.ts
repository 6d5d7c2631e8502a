/**
 * Child process for the "crash between a timeout and its retract" test: a job of one device
 * with a 60 s in-progress timeout (and `retries` retries, the job paused so none is sent),
 * then a tick 61 s later on the fake clock; the process kills itself (SIGKILL) as soon as the
 * TIMED_OUT is committed (`at` timed-out), or the stay that takes the command back (`at`
 * retract), before anything else the engine does after it.
 * argv: <fixture dir> <retries> [at]; writes <dir>/crash.json ({ jobId, deviceId }) before the tick.
 */
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { startRolloutFixture } from '../rollout-fixture.ts';

const [dir, retries, at = 'timed-out'] = process.argv.slice(2) as [string, string, string?];
const f = await startRolloutFixture({ dir });
await f.addArtifact('1.0.0');
await f.addArtifact('2.0.0');
const [deviceId] = await f.fleet('crash', 1);
const limit = Number(retries);
const jobId = (await f.rollouts.jobs.create({ artifact: 'fw@2.0.0', targets: { devices: [deviceId!] }, timeouts: { inProgressSeconds: 60 }, ...(limit > 0 ? { retries: { limit } } : {}) })).job.jobId;
if (limit > 0) await f.rollouts.jobs.pause(jobId);
writeFileSync(path.join(dir, 'crash.json'), JSON.stringify({ jobId, deviceId }));
// both emitted right after the commit (execution-writer.ts, the replica), before the write's caller goes on
if (at === 'timed-out') {
  f.events.on('execution.changed', ({ current }) => {
    if (current.status === 'TIMED_OUT') process.kill(process.pid, 'SIGKILL');
  });
} else {
  f.events.on('shadow.updated', ({ current }) => {
    const software = current.state.desired?.software as { jobId?: unknown } | null | undefined;
    if (software?.jobId === `${jobId}.cancel`) process.kill(process.pid, 'SIGKILL');
  });
}
f.advance(61_000);
await f.tick();
// not reached: the tick timed the device out
process.exit(3);
