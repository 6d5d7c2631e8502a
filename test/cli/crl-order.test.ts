/**
 * cli/crl-order.ts on CRLs made by the project's own encoder (pki/revocation-list.ts) with two
 * real CAs: which CA's list crl.pem keeps when a fetched file and the one on disk differ.
 */
import assert from 'node:assert/strict';
import { createPrivateKey } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { newerCrls } from '../../src/cli/crl-order.ts';
import { BACKDATE_MS, createCa } from '../../src/pki/certificate-authority.ts';
import { MAX_AHEAD_MS, buildCrl } from '../../src/pki/revocation-list.ts';
import { Scratch } from '../helpers/scratch.ts';

const HOUR = 3_600_000;
const NOW = Date.UTC(2026, 11, 7, 6, 0, 0);
const bounds = { now: NOW, backdateMs: BACKDATE_MS, maxAheadMs: MAX_AHEAD_MS };

describe('newerCrls: per CA, never an older list over a newer one', () => {
  const scratch = new Scratch();
  let crl: (ca: 0 | 1, serials: string[], issuedAt: number) => string;
  before(async () => {
    const cas: { cert: string; key: ReturnType<typeof createPrivateKey> }[] = [];
    for (const name of ['CA one', 'CA two']) {
      const dir = await scratch.tmp('updraft-crl-order-');
      await createCa(dir, name);
      cas.push({ cert: await readFile(path.join(dir, 'pki', 'ca.crt'), 'utf8'), key: createPrivateKey(await readFile(path.join(dir, 'pki', 'ca.key'))) });
    }
    crl = (ca, serials, issuedAt) => buildCrl({ caCertificate: cas[ca]!.cert, caKey: cas[ca]!.key, entries: serials.map((serial) => ({ serial, revokedAt: issuedAt - 1000 })), issuedAt });
  });
  after(() => scratch.release());

  it('takes a newer or equal list, and any list when nothing is on disk', () => {
    const older = crl(0, ['01'], NOW - HOUR);
    const newer = crl(0, ['02'], NOW);
    assert.equal(newerCrls(newer, older, bounds).pem, newer, 'newer over older');
    assert.deepEqual(newerCrls(newer, older, bounds).kept, [], 'nothing kept from disk');
    assert.equal(newerCrls(newer, undefined, bounds).pem, newer, 'nothing on disk');
    assert.equal(newerCrls(newer, 'not a crl', bounds).pem, newer, 'an unreadable file');
    const same = crl(0, ['03'], NOW);
    assert.equal(newerCrls(same, newer, bounds).pem, same, 'the same second and number: the fetched one');
  });

  it('keeps the newer on-disk list of a CA, takes the other CA\'s fetched one, drops a CA no longer fetched', () => {
    const diskOne = crl(0, ['01', '02'], NOW);
    const fetchedOne = crl(0, ['01'], NOW - HOUR); // older, and without 02: would re-admit it
    const fetchedTwo = crl(1, ['0a'], NOW - HOUR);
    const diskTwo = crl(1, [], NOW - 2 * HOUR);
    const r = newerCrls(fetchedOne + fetchedTwo, diskOne + diskTwo, bounds);
    assert.equal(r.pem, diskOne + fetchedTwo, 'CA one: the on-disk list; CA two: the fetched one');
    assert.equal(r.kept.length, 1, `one CA kept: ${JSON.stringify(r.kept)}`);
    assert.equal(r.kept[0]!.crlNumber, String(Math.floor(NOW / 1000)), 'the WARN names the list kept');
    assert.equal(newerCrls(fetchedTwo, diskOne + diskTwo, bounds).pem, fetchedTwo, 'a CA only on disk is dropped (the fetched file is the CAs trusted now)');
  });

  it('an older list that lists every serial on disk is taken; a list on disk from more than 23 hours ahead is replaced by any', () => {
    const ahead = crl(0, ['01'], NOW + 2 * HOUR);
    const superset = crl(0, ['01', '02'], NOW);
    assert.equal(newerCrls(superset, ahead, bounds).pem, superset, 'older but re-admits nobody');
    const lacking = crl(0, ['02'], NOW);
    assert.equal(newerCrls(lacking, ahead, bounds).pem, ahead, 'older and without 01, from 2 hours ahead: kept');
    const farAhead = crl(0, ['01'], NOW + MAX_AHEAD_MS + HOUR);
    assert.equal(newerCrls(lacking, farAhead, bounds).pem, lacking, 'a list from 24 hours ahead does not hold the file');
    const justAhead = crl(0, ['01'], NOW + MAX_AHEAD_MS - 60_000);
    assert.equal(newerCrls(lacking, justAhead, bounds).pem, justAhead, 'one within the 23 hours does');
  });
});
