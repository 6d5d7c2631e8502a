/** Persistence of the agent state, and the simulated installer. */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { FileAgentStateStore, MAX_FINISHED_JOBS, MAX_SAVED_ERROR_CHARS, MemoryAgentStateStore, checkTransition, cutReason, rememberFinished, type AgentStateData } from '../../src/agent/agent-state.ts';
import { SimulatedInstaller, seededRandom } from '../../src/agent/simulated-installer.ts';
import { UpdraftError } from '../../src/errors.ts';

const command = { name: 'fw', version: '2.0.0', sha256: 'a'.repeat(64), size: 10, jobId: 'job-1', url: 'http://x/y?sig=1', urlExpiresAt: 2_000_000_000 };

describe('FileAgentStateStore', () => {
  let dir: string;
  beforeEach(async () => (dir = await mkdtemp(path.join(os.tmpdir(), 'updraft-state-'))));
  afterEach(() => rm(dir, { recursive: true, force: true }));

  it('starts empty, round-trips, and leaves no temporary file', async () => {
    const store = new FileAgentStateStore(path.join(dir, 'sub', 'agent-state.json'));
    // nothing saved: what the device did before is not known here (the agent asks its shadow)
    assert.deepEqual(await store.load(), { finished: [], unknownPast: true });
    const state: AgentStateData = {
      inFlight: { jobId: 'job-1', command, phase: 'DOWNLOADING', startedAt: '2024-01-01T00:00:00.000Z' },
      finished: [{ jobId: 'job-0', status: 'FAILURE', error: 'x', finishedAt: '2024-01-01T00:00:00.000Z' }],
    };
    await Promise.all([store.save({ finished: [] }), store.save(state)]); // the later save wins
    // every load says the past may be newer than the file (a save the disk refused): the agent asks its shadow
    assert.deepEqual(await new FileAgentStateStore(path.join(dir, 'sub', 'agent-state.json')).load(), { ...state, unknownPast: true });
    assert.deepEqual(await readdir(path.join(dir, 'sub')), ['agent-state.json']);
  });

  it('sets a corrupt file aside and starts empty', async () => {
    const file = path.join(dir, 'agent-state.json');
    await writeFile(file, '{"inFlight": {');
    assert.deepEqual(await new FileAgentStateStore(file).load(), { finished: [], unknownPast: true });
    assert.ok((await readdir(dir)).some((n) => n.startsWith('agent-state.json.corrupt-')));
  });

  it('says at every load that the past may be newer than the file (a save the disk refused)', async () => {
    const file = path.join(dir, 'agent-state.json');
    await new FileAgentStateStore(file).save({ finished: [], unknownPast: true, clockOffsetReported: 3600 });
    assert.deepEqual(await new FileAgentStateStore(file).load(), { finished: [], unknownPast: true, clockOffsetReported: 3600 });
    await new FileAgentStateStore(file).save({ finished: [] });
    assert.deepEqual(await new FileAgentStateStore(file).load(), { finished: [], unknownPast: true });
  });

  it('drops a malformed in-flight record but keeps the finished jobs', async () => {
    const file = path.join(dir, 'agent-state.json');
    await writeFile(file, JSON.stringify({ inFlight: { jobId: 'j', phase: 'DOWNLOADING', command: { url: 1 } }, finished: [{ jobId: 'a', status: 'SUCCESS' }, { bogus: true }] }));
    assert.deepEqual(await new FileAgentStateStore(file).load(), { finished: [{ jobId: 'a', status: 'SUCCESS' }], unknownPast: true });
  });

  it('remembers a bounded number of finished jobs, most recent last, without duplicates', () => {
    let list = rememberFinished([], { jobId: 'a', status: 'SUCCESS', finishedAt: '' });
    for (let i = 0; i < MAX_FINISHED_JOBS + 5; i++) list = rememberFinished(list, { jobId: `j${i}`, status: 'SUCCESS', finishedAt: '' });
    list = rememberFinished(list, { jobId: 'j7', status: 'FAILURE', finishedAt: '' });
    assert.equal(list.length, MAX_FINISHED_JOBS);
    assert.equal(list.filter((j) => j.jobId === 'j7').length, 1);
    assert.equal(list.at(-1)!.status, 'FAILURE');
    assert.ok(!list.some((j) => j.jobId === 'a'));
  });

  it('refuses illegal phase changes', () => {
    checkTransition('DOWNLOADING', 'VERIFYING');
    checkTransition('INSTALLING', 'REPORTING');
    assert.throws(() => checkTransition('DOWNLOADING', 'INSTALLING'), (err: unknown) => err instanceof UpdraftError && err.code === 'INTERNAL');
    assert.throws(() => checkTransition('REPORTING', 'DOWNLOADING'));
  });

  it('writes the state file readable by the owner only (it holds a signed URL)', async () => {
    const file = path.join(dir, 'agent-state.json');
    await new FileAgentStateStore(file).save({ finished: [] });
    const { stat } = await import('node:fs/promises');
    assert.equal((await stat(file)).mode & 0o077, 0);
    assert.equal(JSON.parse(await readFile(file, 'utf8')).version, 1);
  });
});

describe('cutReason', () => {
  const jsonBytes = (t: string) => Buffer.byteLength(JSON.stringify(t)) - 2;
  it('keeps a reason that fits, and cuts one to its characters and to its bytes of JSON, never inside a surrogate pair', () => {
    assert.equal(cutReason('disk full', '…'), 'disk full');
    for (const tail of ['…', '… (cut)', '... (15001 characters)'])
    for (const text of ['x'.repeat(5_000), '\u0001'.repeat(5_000), '漢'.repeat(5_000), '😀'.repeat(5_000), `a${'😀'.repeat(5_000)}`, `ab${'😀'.repeat(5_000)}`]) {
      const cut = cutReason(text, tail);
      assert.ok(cut.length <= MAX_SAVED_ERROR_CHARS, `${cut.length} characters`);
      assert.ok(jsonBytes(cut) <= MAX_SAVED_ERROR_CHARS, `${jsonBytes(cut)} bytes of JSON`);
      // as much kept as fits: one more character (a whole pair) would not
      const kept = cut.slice(0, -tail.length);
      const next = text.slice(0, kept.length + (text.codePointAt(kept.length)! > 0xffff ? 2 : 1));
      assert.ok(next.length + tail.length > MAX_SAVED_ERROR_CHARS || jsonBytes(next + tail) > MAX_SAVED_ERROR_CHARS, `${kept.length} code units kept, ${next.length} would fit too (tail ${tail})`);
      assert.ok(cut.endsWith(tail));
      assert.doesNotMatch(cut, /[\ud800-\udbff](?![\udc00-\udfff])/, 'no lone high surrogate');
      assert.ok(text.startsWith(kept));
    }
  });
});

describe('MemoryAgentStateStore', () => {
  it('keeps what was saved, not what the agent does with its state afterwards', async () => {
    const store = new MemoryAgentStateStore();
    assert.deepEqual(await store.load(), { finished: [], unknownPast: true }, 'nothing saved: what the device did before is unknown');
    const state: AgentStateData = { inFlight: { jobId: 'job-1', command, phase: 'DOWNLOADING', startedAt: '2024-01-01T00:00:00.000Z' }, finished: [] };
    await store.save(state);
    // the agent moves on by replacing the parts of its state, as it does between phases
    state.inFlight = { ...state.inFlight!, phase: 'VERIFYING' };
    state.finished = rememberFinished(state.finished, { jobId: 'job-0', status: 'SUCCESS', finishedAt: '' });
    delete state.inFlight;
    const loaded = await store.load();
    assert.equal(loaded.inFlight?.phase, 'DOWNLOADING');
    assert.deepEqual(loaded.finished, []);
    // a loaded state is the agent's own to change at the top
    loaded.finished = [];
    delete loaded.inFlight;
    assert.equal((await store.load()).inFlight?.phase, 'DOWNLOADING');
  });
});

describe('SimulatedInstaller', () => {
  const sw = { name: 'fw', version: '2.0.0', sha256: 'b'.repeat(64), size: 1, jobId: 'j' };

  it('records the version it installs', async () => {
    const i = new SimulatedInstaller({ initial: { version: '1.0.0' } });
    assert.deepEqual(await i.current(), { version: '1.0.0' });
    await i.install('/nonexistent', sw, {});
    assert.deepEqual(await i.current(), { name: 'fw', version: '2.0.0', sha256: sw.sha256, size: 1 });
    assert.equal(i.installs, 1);
  });

  it('fails at the configured rate, keeping the old version, deterministically with a seed', async () => {
    const run = async () => {
      const i = new SimulatedInstaller({ failureRate: 0.3, random: seededRandom(42) });
      const outcomes: string[] = [];
      for (let n = 0; n < 200; n++) {
        const before = (await i.current()).version;
        try {
          await i.install('', { ...sw, version: `2.0.${n}` }, {});
          outcomes.push('ok');
        } catch (err) {
          assert.ok(err instanceof UpdraftError && err.code === 'HEALTH_CHECK');
          assert.equal((await i.current()).version, before);
          outcomes.push('fail');
        }
      }
      return outcomes;
    };
    const a = await run();
    assert.deepEqual(await run(), a);
    const failures = a.filter((o) => o === 'fail').length;
    assert.ok(failures > 30 && failures < 90, `failures: ${failures}`);
  });

  it('is aborted by the signal during its configured duration', async () => {
    const ctrl = new AbortController();
    const i = new SimulatedInstaller({ durationMs: 60_000 });
    const p = i.install('', sw, { signal: ctrl.signal });
    ctrl.abort();
    await assert.rejects(p, (err: unknown) => err instanceof UpdraftError && err.code === 'INSTALL');
    assert.equal((await i.current()).version, '1.0.0');
  });
});
