/**
 * A DOWNLOADING report says the share of the build the device holds when it is sent, not the
 * last progress *reported* (which the step and interval throttle): QA saw the catch-up after
 * a reconnect say 0.419 with 63% on disk, and a restarted agent resuming half a file report
 * `progress: 0`. Real broker over TCP (through a relay the test cuts), real HTTP download from
 * a server that stalls halfway, the real agent and its state files.
 */
import assert from 'node:assert/strict';
import { stat } from 'node:fs/promises';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { partFile } from '../../src/agent/download-files.ts';
import { SimulatedInstaller } from '../../src/agent/simulated-installer.ts';
import type { JsonObject } from '../../src/protocol/json.ts';
import { startRelay, type TcpRelay } from '../helpers/tcp-relay.ts';
import { AgentFixture, eventually, nextEvent } from './support/agent-fixture.ts';

/** Bytes of the part file now (0 when there is none). */
async function onDisk(file: string): Promise<number> {
  return stat(file).then((st) => st.size, () => 0);
}

/** The share of the build `bytes` are, floored to 0.001 as the agent's progress is. */
function heldShare(bytes: number, size: number): number {
  return Math.floor((bytes / size) * 1000) / 1000;
}

/** The DOWNLOADING reports of `jobId`, in order, as the server got them. */
function downloading(f: AgentFixture, jobId: string): JsonObject[] {
  return f.server.reportsFor(jobId).filter((r) => r.status === 'DOWNLOADING');
}

/** Progress never goes back within the job (nothing here starts the download again from byte 0). */
function assertNonDecreasing(reports: JsonObject[]): void {
  const seen = reports.map((r) => Number(r.progress));
  assert.ok(seen.every((p, i) => i === 0 || p >= seen[i - 1]!), `progress went back: ${JSON.stringify(seen)}`);
}

describe('download progress in reports', () => {
  let f: AgentFixture;
  let relay: TcpRelay | undefined;
  beforeEach(async () => {
    f = new AgentFixture();
    await f.start();
    relay = undefined;
  });
  afterEach(async () => {
    await f.close();
    await relay?.stop();
  });

  it('the catch-up after a reconnect says the share on disk, not the last progress reported', async () => {
    relay = await startRelay({ host: '127.0.0.1', port: Number(new URL(f.broker.url).port) });
    // a step the stalled half never reaches: no progress-only report goes out before the cut
    const agent = f.agent(new SimulatedInstaller({ initial: { name: 'fw', version: '1.0.0' } }), { brokerUrl: `mqtt://127.0.0.1:${relay.port}`, progressStep: 0.6 });
    let deltaVersion = -1;
    agent.on('delta', (d) => (deltaVersion = Math.max(deltaVersion, Number(d.version))));
    await agent.start();
    await f.server.until(() => f.server.reports.length >= 1 && f.server.gets >= 1, 'the connect report and get');
    f.http.mode = 'stall';
    const jobId = 'job-reconnect';
    const file = partFile(f.stateDir, jobId);
    await f.server.setDesired(f.software(jobId));
    await f.http.stalled();
    const half = Math.floor(f.content.length / 2);
    await eventually(async () => (await onDisk(file)) === half, 'half the build on disk');
    await f.server.until(() => downloading(f, jobId).length >= 1, 'the DOWNLOADING report');
    // the delta the server sends after its answer to the last report has come: the answer is
    // in, nothing is in flight at the cut (a request whose answer the cut lost is sent again as it was)
    const answered = f.server.version;
    await eventually(() => deltaVersion >= answered, `the delta after the answer to version ${answered}`);
    const before = downloading(f, jobId).length;
    assert.equal(downloading(f, jobId).at(-1)!.progress, 0, 'no progress report before the cut (the step is 0.6, half is on disk)');

    const offline = nextEvent(agent, 'connection', (e) => !e.online);
    await relay.down();
    await offline;
    const online = nextEvent(agent, 'connection', (e) => e.online);
    await relay.up();
    await online;
    await f.server.until(() => downloading(f, jobId).length > before, 'the catch-up report after the reconnect');
    const catchUp = downloading(f, jobId)[before]!;
    const held = heldShare(await onDisk(file), f.content.length);
    assert.equal(held, heldShare(half, f.content.length), `the stalled download holds half the build (${await onDisk(file)} bytes)`);
    assert.equal(catchUp.progress, held, `the catch-up says the share on disk (${held}), not the last reported progress: ${JSON.stringify(catchUp)}`);
    assertNonDecreasing(downloading(f, jobId));
  });

  it('a restart resuming half a file reports that half from its first report', async () => {
    f.http.mode = 'stall';
    const jobId = 'job-restart';
    const file = partFile(f.stateDir, jobId);
    const first = f.agent(new SimulatedInstaller({ initial: { name: 'fw', version: '1.0.0' } }));
    await first.start();
    await f.server.until(() => f.server.reports.length >= 1 && f.server.gets >= 1, 'the connect report and get');
    await f.server.setDesired(f.software(jobId));
    await f.http.stalled();
    const half = Math.floor(f.content.length / 2);
    await eventually(async () => (await onDisk(file)) === half, 'half the build on disk');
    // its reports are all in before the stop: none of the first agent's comes after `before`
    await f.server.until(() => downloading(f, jobId).length >= 1, 'the DOWNLOADING report');
    await first.stop();
    const kept = await onDisk(file);
    assert.equal(kept, half, 'the stop keeps the half downloaded');

    // the resumed request stalls too (at three quarters): the job stays DOWNLOADING
    const before = downloading(f, jobId).length;
    const second = f.agent(new SimulatedInstaller({ initial: { name: 'fw', version: '1.0.0' } }));
    await second.start();
    await f.server.until(() => downloading(f, jobId).length > before, 'a DOWNLOADING report from the restarted agent');
    const resumed = downloading(f, jobId).slice(before);
    const keptShare = heldShare(kept, f.content.length);
    assert.ok(Number(resumed[0]!.progress) >= keptShare, `the first report after the restart says at least the kept share ${keptShare}: ${JSON.stringify(resumed[0])}`);
    await f.http.stalled(2);
    await eventually(async () => (await onDisk(file)) > half, 'the resumed bytes on disk');
    assert.ok(f.http.requests.at(-1)!.range === `bytes=${half}-`, `the restart resumed with a Range request: ${f.http.requests.at(-1)!.range}`);
    assertNonDecreasing(downloading(f, jobId));
  });
});
