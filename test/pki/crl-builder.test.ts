/**
 * pki/crl-builder.ts: the server's CRLs built and signed in a worker thread, so that a list of
 * 100,000s of entries does not stop the thread serving MQTT and HTTP (QA 2026-12: 1.6 to 20 s
 * of stall). Callers of the same inputs share a build; a worker that dies rejects its build
 * with a clear error and the next build gets a new worker.
 */
import assert from 'node:assert/strict';
import { createPrivateKey, randomBytes, type KeyObject } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { performance } from 'node:perf_hooks';
import { threadId } from 'node:worker_threads';
import { after, before, describe, it } from 'node:test';
import { caPaths, createCa, type CertificateAuthority } from '../../src/pki/certificate-authority.ts';
import { CrlBuilder, crlBuilder } from '../../src/pki/crl-builder.ts';
import { buildCrl, crlDerInput, type RevokedEntry } from '../../src/pki/revocation-list.ts';
import { Scratch } from '../helpers/scratch.ts';

const scratch = new Scratch();
const builders: CrlBuilder[] = [crlBuilder];
after(async () => {
  for (const b of builders) await b.stop();
  await scratch.release();
});

const now = Date.now();
const entries = (n: number): RevokedEntry[] => Array.from({ length: n }, () => ({ serial: randomBytes(16).toString('hex'), revokedAt: now - Math.floor(Math.random() * 1e10) }));

describe('CRL builder (worker thread)', () => {
  let ca: CertificateAuthority;
  let key: KeyObject;
  before(async () => {
    const dir = await scratch.tmp('updraft-crl-builder-');
    ca = await createCa(dir);
    key = createPrivateKey(await readFile(caPaths(dir).key, 'utf8'));
  });

  it("builds a list of 100,000 entries without holding the caller's thread", async () => {
    const list = entries(100_000);
    // a ticker on this thread: how often it runs while the list is built, and its longest gap
    let ticks = 0;
    let last = performance.now();
    let maxGap = 0;
    let ticking = true;
    const tick = () => {
      const t = performance.now();
      maxGap = Math.max(maxGap, t - last);
      last = t;
      ticks++;
      if (ticking) setImmediate(tick);
    };
    const started = performance.now();
    last = started;
    setImmediate(tick);
    const built = await crlBuilder.build(crlDerInput({ caCertificate: ca.certificate, caKey: key, entries: list, issuedAt: now }));
    const took = performance.now() - started;
    ticking = false;
    assert.notEqual(built.threadId, threadId, `built in another thread (${built.threadId}) than the caller's (${threadId})`);
    assert.equal(built.pem, buildCrl({ caCertificate: ca.certificate, caKey: key, entries: list, issuedAt: now }), 'the list built on the thread would be the same');
    // relative to the build's own duration, not to a wall-clock figure: on the caller's thread
    // the build was one gap as long as the build (ticks 0)
    assert.ok(ticks >= 20, `the thread ran its ticker while the list was built: ${ticks} ticks in ${took.toFixed(0)} ms`);
    assert.ok(maxGap < took / 2, `the thread was never held for half the build: longest gap ${maxGap.toFixed(0)} ms of ${took.toFixed(0)} ms`);
  });

  it('shares a build between callers of the same inputs, and builds other inputs after it', async () => {
    const list = entries(20_000);
    const input = () => crlDerInput({ caCertificate: ca.certificate, caKey: key, entries: list.map((e) => ({ ...e })), issuedAt: now });
    const first = crlBuilder.build(input());
    const second = crlBuilder.build(input());
    const other = crlBuilder.build(crlDerInput({ caCertificate: ca.certificate, caKey: key, entries: list, issuedAt: now + 1000 }));
    assert.equal(second, first, 'the second caller of the same inputs shares the first build');
    assert.notEqual(other, first, 'other inputs (another issue time) are another build');
    const [a, b, c] = await Promise.all([first, second, other]);
    assert.equal(a.pem, b.pem, 'the same list for both callers');
    assert.notEqual(c.pem, a.pem, 'a list of its own for the other inputs');
  });

  it('rejects the build of a worker that dies (out of heap) with a clear error, and builds the next in a new worker', async () => {
    // the heap of a worker capped: enough to start and build a small list, not 300,000 entries
    const capped = new CrlBuilder({ inlineBelow: 0, resourceLimits: { maxOldGenerationSizeMb: 16, maxYoungGenerationSizeMb: 2 } });
    builders.push(capped);
    const small = crlDerInput({ caCertificate: ca.certificate, caKey: key, entries: entries(3), issuedAt: now });
    const before = await capped.build(small);
    await assert.rejects(
      capped.build(crlDerInput({ caCertificate: ca.certificate, caKey: key, entries: entries(300_000), issuedAt: now })),
      (e: Error & { code?: string }) => e.code === 'INTERNAL' && /the CRL could not be built: its worker thread .*out of memory.*ask again/.test(e.message),
      'the build rejects with INTERNAL (a 500, retried by the watch), saying the worker died',
    );
    const next = await capped.build(small);
    assert.notEqual(next.threadId, before.threadId, `the next build runs in a new worker (${next.threadId}, the dead one ${before.threadId})`);
    assert.equal(next.pem, before.pem, 'and makes the list');
  });
});
