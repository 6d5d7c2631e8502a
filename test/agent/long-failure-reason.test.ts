/**
 * A job's failure reason stays bounded however long the error it comes from: an installer of
 * the device's own (or a custom downloader) whose error quotes a URL of 70,000 characters had
 * its message reported whole (redacted, not cut), a report the server refuses (larger than
 * its shadow documents, 8 KiB by default): the outcome never reached it and the job waited
 * for its timeout. Real server, real agent, real MQTT; the installer is the test's (it is the
 * device's seam).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { UpdateAgent } from '../../src/agent/agent.ts';
import type { JobFinishedEvent } from '../../src/agent/agent-events.ts';
import { MAX_SAVED_ERROR_CHARS } from '../../src/agent/agent-state.ts';
import type { Installer, RecoveryResult } from '../../src/agent/installer.ts';
import { createLogger } from '../../src/util/logger.ts';
import { eventually } from '../helpers/cli.ts';
import { registerDevice, startTestServer, type TestServer } from '../helpers/server.ts';
import { addArtifact, deploy, outcome, startAgent } from '../security/support.ts';
import { nextEvent } from './support/agent-fixture.ts';

const LONG_URL = `https://mirror.example.com/boot/${'x'.repeat(70_000)}.bin?X-Amz-Signature=SECRET-SIGNATURE`;

describe('a failure reason quoting a URL of 70,000 characters', () => {
  let ts: TestServer;
  let root: string;
  const agents: UpdateAgent[] = [];

  before(async () => {
    ts = await startTestServer();
    root = await mkdtemp(path.join(os.tmpdir(), 'updraft-long-reason-'));
    await addArtifact(ts, '2.0.0', randomBytes(20_000));
  });
  after(async () => {
    await Promise.all(agents.map((a) => a.stop()));
    await ts.close();
    await rm(root, { recursive: true, force: true });
  });

  const cases: { what: string; installer: () => Installer }[] = [
    {
      what: 'an installer that throws it',
      installer: () => ({
        current: async () => ({ name: 'fw', version: '1.0.0' }),
        install: async () => {
          throw new Error(`cannot fetch the bootloader from ${LONG_URL}: HTTP 404`);
        },
      }),
    },
    {
      what: "an installer's recovery that says it rolled back with it",
      installer: () => ({
        current: async () => ({ name: 'fw', version: '1.0.0' }),
        install: async () => {
          throw new Error(`cannot fetch the bootloader from ${LONG_URL}: HTTP 404`);
        },
        recover: async (): Promise<RecoveryResult> => ({ outcome: 'rolled-back', reason: `rolled back: ${LONG_URL} unreachable` }),
      }),
    },
  ];

  // a script's binary output quoted in its error: each control character is 6 bytes of JSON
  // (\u0001), so 2,000 of them made a report of 12 KB the server refused (over its 8 KiB)
  const BINARY = `install script failed: ${'\u0001\u0002\u001b'.repeat(1_500)} ${LONG_URL}`;
  cases.push({
    what: 'an installer whose error quotes a binary output',
    installer: () => ({
      current: async () => ({ name: 'fw', version: '1.0.0' }),
      install: async () => {
        throw new Error(BINARY);
      },
    }),
  });

  cases.forEach(({ what, installer }, i) => {
    it(`is reported bounded and redacted, and the server records the failure: ${what}`, async () => {
      const deviceId = `lr-${i}`;
      const lines: string[] = [];
      const logger = createLogger({ level: 'info', format: 'json', write: (l) => lines.push(l) });
      const password = await registerDevice(ts, deviceId);
      const credentials = { username: deviceId, password };
      let jobId: string;
      let agent: UpdateAgent;
      let finished: JobFinishedEvent[];
      if (i !== 1) {
        ({ agent, finished } = await startAgent(ts, root, deviceId, { ...credentials, installer: installer(), logger }));
        agents.push(agent);
        jobId = await deploy(ts, [deviceId], 'fw@2.0.0');
      } else {
        // a restart mid-install: the installer's recovery says it rolled back, with its reason
        const hanging: Installer = {
          current: async () => ({ name: 'fw', version: '1.0.0' }),
          install: (_f, _sw, ctx) =>
            new Promise((_r, reject) => {
              const signal = ctx.signal!;
              if (signal.aborted) reject(signal.reason);
              else signal.addEventListener('abort', () => reject(signal.reason), { once: true });
            }),
        };
        const first = await startAgent(ts, root, deviceId, { ...credentials, installer: hanging });
        agents.push(first.agent);
        const installing = nextEvent(first.agent, 'status', (e) => e.status === 'INSTALLING');
        jobId = await deploy(ts, [deviceId], 'fw@2.0.0');
        await installing;
        await first.agent.stop();
        ({ agent, finished } = await startAgent(ts, root, deviceId, { ...credentials, installer: installer(), logger }));
        agents.push(agent);
      }
      const o = await outcome(finished, jobId);
      assert.equal(o.status, 'FAILURE');
      const reason = o.error ?? '';
      assert.ok(reason.length <= MAX_SAVED_ERROR_CHARS, `the reason has ${reason.length} characters`);
      assert.ok(!reason.includes('SECRET'), 'the URL\'s query is redacted');
      assert.match(reason, i === 2 ? /^install script failed: \u0001\u0002\u001b/ : /(cannot fetch the bootloader from|rolled back:) https:\/\/mirror\.example\.com\/boot\/xxx/);
      assert.match(reason, /\(\d+ characters\)$/);
      // the server took the report: the execution is FAILED with that reason
      const execution = await eventually(async () => {
        const e = await ts.server.store.getExecution(jobId, deviceId);
        return e?.status === 'FAILED' ? e : undefined;
      }, 15_000, `${deviceId}'s execution FAILED`);
      assert.equal(execution.details.error, reason);
      // and its JSON text is bounded too, whatever its characters
      assert.ok(Buffer.byteLength(JSON.stringify(reason)) <= MAX_SAVED_ERROR_CHARS + 2, `the reason is ${Buffer.byteLength(JSON.stringify(reason))} bytes of JSON`);
      const software = (await ts.server.store.getShadow(deviceId, ''))?.state.reported?.software as Record<string, unknown> | undefined;
      assert.equal(software?.error, reason);
      // and no line of the agent's log carries it whole
      const longest = Math.max(...lines.map((l) => l.length));
      assert.ok(longest < 2 * MAX_SAVED_ERROR_CHARS, `a log line of ${longest} characters`);
    });
  });
});
