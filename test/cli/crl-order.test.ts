/**
 * cli/crl-order.ts on CRLs made by the project's own encoder (pki/revocation-list.ts) with two
 * real CAs: which CA's list crl.pem keeps when a fetched file and the one on disk differ. The
 * lists are small here; a large one (read from its two ends, crl-order.ts) is covered by a
 * list of 3,000 entries.
 */
import assert from 'node:assert/strict';
import { createPrivateKey, generateKeyPairSync } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { newerCrls } from '../../src/cli/crl-order.ts';
import { BACKDATE_MS, createCa } from '../../src/pki/certificate-authority.ts';
import { buildCrl } from '../../src/pki/revocation-list.ts';
import { Scratch } from '../helpers/scratch.ts';

const HOUR = 3_600_000;
const NOW = Date.UTC(2026, 11, 7, 6, 0, 0);
let bounds: { now: number; caPem: string };

describe('newerCrls: per CA, never an older list over a newer one', () => {
  const scratch = new Scratch();
  let crl: (ca: 0 | 1, serials: string[], issuedAt: number) => string;
  /** A list with CA one's name and key id, signed by another key. */
  let forged: (serials: string[], issuedAt: number) => string;
  before(async () => {
    const cas: { cert: string; key: ReturnType<typeof createPrivateKey> }[] = [];
    for (const name of ['CA one', 'CA two']) {
      const dir = await scratch.tmp('updraft-crl-order-');
      await createCa(dir, name);
      cas.push({ cert: await readFile(path.join(dir, 'pki', 'ca.crt'), 'utf8'), key: createPrivateKey(await readFile(path.join(dir, 'pki', 'ca.key'))) });
    }
    crl = (ca, serials, issuedAt) => buildCrl({ caCertificate: cas[ca]!.cert, caKey: cas[ca]!.key, entries: serials.map((serial) => ({ serial, revokedAt: issuedAt - 1000 })), issuedAt });
    const other = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
    forged = (serials, issuedAt) => buildCrl({ caCertificate: cas[0]!.cert, caKey: other, entries: serials.map((serial) => ({ serial, revokedAt: issuedAt - 1000 })), issuedAt });
    bounds = { now: NOW, caPem: cas[0]!.cert + cas[1]!.cert };
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

  it('an older list that lists every serial on disk is taken; a list on disk OpenSSL does not accept yet (issued more than 24 hours ahead) is replaced by any', () => {
    const ahead = crl(0, ['01'], NOW + 2 * HOUR);
    const superset = crl(0, ['01', '02'], NOW);
    assert.equal(newerCrls(superset, ahead, bounds).pem, superset, 'older but re-admits nobody');
    const lacking = crl(0, ['02'], NOW);
    assert.equal(newerCrls(lacking, ahead, bounds).pem, ahead, 'older and without 01, from 2 hours ahead: kept');
    // thisUpdate is BACKDATE_MS (24 h) before the issue: OpenSSL takes a list issued up to 24 h ahead
    const farAhead = crl(0, ['01'], NOW + BACKDATE_MS + 1000);
    assert.equal(newerCrls(lacking, farAhead, bounds).pem, lacking, 'a list from 24 hours and a second ahead (thisUpdate after now: "CRL is not yet valid") does not hold the file');
    const atTheBound = crl(0, ['01'], NOW + BACKDATE_MS);
    assert.equal(newerCrls(lacking, atTheBound, bounds).pem, atTheBound, 'one from exactly 24 hours ahead (thisUpdate = now: in force) does');
    const past23 = crl(0, ['01'], NOW + 23.5 * HOUR);
    assert.equal(newerCrls(lacking, past23, bounds).pem, past23, 'one from 23.5 hours ahead, in force for OpenSSL, is kept (under the 23 h bound it was replaced, re-admitting 01)');
  });

  it('a list on disk is kept only if its signature verifies with a CA given', () => {
    const fetched = crl(0, ['01'], NOW);
    const notSigned = forged(['99'], NOW + HOUR); // CA one's name and key id, another key
    assert.equal(newerCrls(fetched, notSigned, bounds).pem, fetched, 'a newer list not signed by the CA does not hold the file');
    const signed = crl(0, ['99'], NOW + HOUR);
    assert.equal(newerCrls(fetched, signed, bounds).pem, signed, 'the same list signed by the CA does');
    assert.equal(newerCrls(fetched, signed, { ...bounds, caPem: '' }).pem, fetched, 'no CA given: no list on disk can be checked, none holds the file');
    const d = signed.replace(/[A-Za-z0-9+/](?=[A-Za-z0-9+/=]*\n-----END)/, (c) => (c === 'A' ? 'B' : 'A')); // one bit of the signature
    assert.equal(newerCrls(fetched, d, bounds).pem, fetched, 'a signature changed by a bit: the fetched list');
  });

  it('two lists of one CA on disk (a file put together by hand): the newest is compared, and one list is written', () => {
    const newest = crl(0, ['01', '02', '03'], NOW + HOUR);
    const middle = crl(0, ['01', '02'], NOW);
    const fetched = crl(0, ['01', '02'], NOW - 30 * 60_000); // older than both, lacks 03
    assert.equal(newerCrls(fetched, newest + middle, bounds).pem, newest, 'the newest first: kept');
    assert.equal(newerCrls(fetched, middle + newest, bounds).pem, newest, 'the newest last: kept (only the last was compared before)');
    const midFetched = crl(0, ['01', '02'], NOW + 30 * 60_000); // newer than middle, older than newest, lacks 03
    assert.equal(newerCrls(midFetched, newest + middle, bounds).pem, newest, 'newer than one of them but not the newest: the newest kept (the first was passed over before)');
    const all = crl(0, ['01', '02', '03'], NOW - HOUR);
    assert.equal(newerCrls(all, middle + newest, bounds).pem, all, 'a fetched list listing all the newest does: taken');
  });

  it('a large list (read from its two ends): ordered, and a superset found, as a small one', () => {
    const serials = Array.from({ length: 3000 }, (_, i) => (0x100000 + i * 7).toString(16));
    const older = crl(0, serials, NOW - HOUR);
    const newer = crl(0, [...serials, '0abc'], NOW);
    assert.ok(newer.length > 100_000, `a list of ${newer.length} characters is read from its ends`);
    assert.equal(newerCrls(newer, older, bounds).pem, newer, 'newer over older');
    assert.equal(newerCrls(older, newer, bounds).pem, newer, 'older without 0abc: the newer kept');
    const r = newerCrls(older, newer, bounds);
    assert.equal(r.kept[0]?.crlNumber, String(Math.floor(NOW / 1000)), `the CRL Number read from the end of a large list: ${JSON.stringify(r.kept)}`);
    const superset = crl(0, [...serials, '0abc', '0abd'], NOW - HOUR);
    assert.equal(newerCrls(superset, newer, bounds).pem, superset, 'older, listing every serial: taken');
    assert.equal(newerCrls(older, newer.replace(/\n/g, '\r\n'), bounds).kept.length, 1, 'CRLF line ends: read the same');
  });
});
