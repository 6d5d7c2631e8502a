/**
 * The base of the progress step after a restart: the agent's first report says the share of
 * the build kept on disk (UpdateJob.heldProgress), and a download that then starts again from
 * byte 0 (a server ignoring the Range) reports its progress from 0 again, a step at a time.
 * Until the review of 3a87e5b the bytes held were not known to the job after a restart, so
 * the step stayed at the kept share and nothing was reported until the new download passed
 * it (0.61 the first report, for 0 to 70% of the build). A real UpdateJob and a real file; the
 * downloader's calls of its progress callback are made by the test, 10 KB at a time.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { UpdateJob, type UpdateJobDeps } from '../../src/agent/update-job.ts';
import type { SoftwareCommand } from '../../src/protocol/software.ts';

describe('UpdateJob progress after a restart', () => {
  const dirs: string[] = [];
  after(async () => {
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });

  it('reports from 0 again, a step at a time, when the download starts again from byte 0', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'updraft-job-progress-'));
    dirs.push(dir);
    const file = path.join(dir, 'j.part');
    const size = 1_000_000;
    await writeFile(file, Buffer.alloc(size / 2)); // the restart kept half the build
    const reports: number[] = [];
    const command = { jobId: 'j', name: 'fw', version: '2.0.0', size, sha256: '0'.repeat(64), url: 'http://127.0.0.1/x', urlExpiresAt: 0 } as SoftwareCommand;
    // only what onProgress and heldProgress read: the downloader's kind, the file, the pacing, the report
    const deps = { download: async () => ({ file, resumedFrom: 0 }), file, progressStep: 0.1, progressIntervalMs: 0, reportProgress: (_job: UpdateJob, p: number) => reports.push(p) } as unknown as UpdateJobDeps;
    const job = new UpdateJob(command, 'DOWNLOADING', deps);
    // the agent's send of the restart's first DOWNLOADING report takes what is held as reported
    job.progress = await job.heldProgress();
    assert.equal(job.progress, 0.5, 'the first report says the kept half');
    // the server ignores the Range: the downloader writes from byte 0 again
    const onProgress = (job as unknown as { onProgress(received: number, size: number): void }).onProgress.bind(job);
    for (let got = 10_000; got <= 700_000; got += 10_000) onProgress(got, size);
    assert.deepEqual(reports, [0.1, 0.2, 0.31, 0.42, 0.52, 0.63], 'a report per step from 0, not nothing until past the kept share');
  });
});
