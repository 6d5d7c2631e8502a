/**
 * `GET /api/v1/broker/credentials`: what an external broker needs to admit devices (issue 6),
 * page by page: each device's id, whether it is revoked and the `$7$` hash of its secret in
 * Mosquitto's format (`updraft broker mosquitto-config` turns the pages into a password
 * file). With `?ids=a,b,c` (at most 100), those devices only, the ones not registered left
 * out: what `mosquitto-config --watch` asks after `device.credentials` events. Behind the
 * operator token like every `/api/` route; the hashes are of 256-bit random secrets, so they
 * cannot be turned back into them, but they are still kept out of every other view of a
 * device. `GET /api/v1/broker/crl`: the CRL of deleted devices' certificates (pki/revocation-list.ts),
 * operator only too.
 */
import { UpdraftError } from '../errors.ts';
import { isValidId } from '../protocol/topics.ts';
import type { DeviceRegistry } from '../registry/device-registry.ts';
import type { CrlFile } from '../pki/revocation-list.ts';
import type { DeviceRecord, StateStore } from '../store/state-store.ts';
import type { Logger } from '../util/logger.ts';
import { intParam } from './paging.ts';
import { sendJson } from './respond.ts';
import type { Router } from './router.ts';

/** What the broker routes read: the registry, and for the CRL the store and the data directory's pki/. */
export interface BrokerRouteDeps {
  registry: DeviceRegistry;
  /** The revocations, and the settings where the lists' issue times are kept (pki/revocation-list.ts claimIssue). */
  store: Pick<StateStore, 'revocationStamp' | 'listRevokedEntries' | 'addSetting' | 'listSettings' | 'deleteSetting' | 'databaseTime'>;
  dataDir: string;
  logger: Pick<Logger, 'warn'>;
}

/** Adds the broker credentials and CRL routes. */
export function addBrokerRoutes(router: Router, deps: BrokerRouteDeps): void {
  // the crlfile of an external Mosquitto with certificate logins (mosquitto-config --updraft-ca):
  // signed here, where the CA keys are, so the broker's host needs none. 409 when it cannot be
  // made without locking devices out (a previous CA whose key is gone: pki/revocation-list.ts)
  // Behind the operator token (http-server.ts OPERATOR_READS: a viewer reads no broker file).
  // The last list made is kept: the same revocations (the digest) give it back without new
  // RSA signatures; new ones are issued at least a second later than any list issued on this
  // store, by this instance or another (the store's settings), so OpenSSL takes them even
  // from an instance whose clock is behind.
  // The revocations are checked at every call by their stamp (StateStore.revocationStamp: one
  // aggregate query on an index), not kept for a while: the watch asks right after a deletion
  // event, and a list kept from before it would leave the deleted device admitted until the
  // next change. The rows are read (in pages, listRevokedEntries) only when the stamp changed:
  // QA 2026-12-07 found every call reading all of them, 0.5-1.2 s of the thread at 100,000
  // on SQLite, with nothing changed.
  // The digest is the ETag: a client that holds the list of the same CAs and revocations
  // (If-None-Match) is answered 304 with no body, and no list is made for it, even by an
  // instance that has none kept (the 200 carried 6.4 MB of JSON at 100,000 revocations).
  // One list made at a time on this instance: requests that come together (every broker's watch
  // asks right after the same deletion event) wait for it, and the next finds it kept (the same
  // digest) instead of making its own. Review of 2026-12-07: each made its own, with its own
  // issue time claimed in the store; the claims overtook one another until one request gave up
  // (503) and the list that won was issued well ahead of the clock, with N row reads and N builds
  // held in memory at once.
  let last: CrlFile | undefined;
  let making: Promise<unknown> = Promise.resolve();
  /** The current list: the kept one while the stamp and the CAs are the same, else a new one. */
  const current = async (): Promise<CrlFile & { ok: true }> => {
    const now = Date.now();
    const { crlFile, listedAfter, MAX_AHEAD_MS } = await import('../pki/revocation-list.ts'); // node-forge: loaded when asked
    // the stamp and the rows read with one bound: those expired a day ago at most, not those
    // this clock says are valid (one ahead left out certificates still in force: QA 2026-12-07)
    const since = listedAfter(now);
    const stamp = await deps.store.revocationStamp(since);
    // only claims more than MAX_AHEAD_MS (23 h) ahead are dropped. Mosquitto (2.0.11, QA
    // 2026-12-07) keeps no earlier list across a reload: it enforces the crl.pem it read last,
    // so the list made now replaces the one issued ahead at its next reload, and a list issued
    // more than a day ahead (thisUpdate in the future) was refused by OpenSSL with every
    // certificate of its CAs until then
    const dropped = (claims: string[]) =>
      deps.logger.warn('CRL issue times ahead of the clock dropped (a server or database clock was more than 23 hours ahead when they were issued): lists are issued by the clock again. Set that clock right if it still is ahead. Mosquitto enforces the crl.pem it read at its last start or reload, so the list made now replaces the one issued ahead once it is written and Mosquitto reloaded (mosquitto-config --watch with --reload-command does both; otherwise rerun mosquitto-config and kill -HUP Mosquitto); until then a Mosquitto holding a list issued more than a day ahead refuses every device certificate ("CRL is not yet valid")', { claims: claims.join(', ') });
    const file = await crlFile(deps.dataDir, { stamp, load: () => deps.store.listRevokedEntries(since) }, now, last, deps.store, dropped);
    if (!file.ok) throw new UpdraftError('CONFLICT', file.reason);
    // a later list than the one kept, or one that replaces a list issued by a clock ahead
    if (!last?.ok || file.issuedAt >= last.issuedAt || last.issuedAt > now + MAX_AHEAD_MS) last = file;
    return file;
  };
  router.add('GET', '/api/v1/broker/crl', async ({ req, res }) => {
    const held = heldTags(req.headers['if-none-match']);
    if (held.length > 0) {
      const now = Date.now();
      const { crlDigest, listedAfter } = await import('../pki/revocation-list.ts');
      const digest = await crlDigest(deps.dataDir, await deps.store.revocationStamp(listedAfter(now)), now);
      // `*`: any list is current (RFC 9110 §13.1.2); weak: the same digest is the same CAs and
      // revocations, signed again (another instance, a restart) with another issue time
      if (held.includes('*') || held.includes(digest)) {
        res.writeHead(304, { etag: `W/"${digest}"` });
        res.end();
        return;
      }
    }
    const run = making.then(current);
    making = run.catch(() => undefined);
    const file = await run;
    sendJson(res, 200, { crl: file.pem, nextUpdate: new Date(file.nextUpdate).toISOString(), revoked: file.revoked, cas: file.cas, digest: file.digest, issuers: file.issuers }, { etag: `W/"${file.digest}"` });
  });

  router.add('GET', '/api/v1/broker/credentials', async ({ res, url }) => {
    const ids = url.searchParams.get('ids');
    if (ids !== null) {
      const wanted = [...new Set(ids.split(',').filter((id) => id !== ''))];
      if (wanted.length === 0 || wanted.length > MAX_IDS) throw new UpdraftError('BAD_REQUEST', `ids must list 1 to ${MAX_IDS} device ids, separated by commas; got ${wanted.length}`);
      const bad = wanted.find((id) => !isValidId(id));
      if (bad !== undefined) throw new UpdraftError('BAD_REQUEST', `"${bad.slice(0, 140)}" is not a device id (1-128 letters, digits, _ . : -)`);
      const found = await Promise.all(wanted.map((id) => deps.registry.find(id)));
      sendJson(res, 200, { items: found.filter((d) => d !== undefined).map(credentials) });
      return;
    }
    const limit = intParam(url, 'limit', 1000, 1, 5000);
    const after = url.searchParams.get('after') ?? undefined;
    const page = await deps.registry.list({ limit, ...(after ? { after } : {}) });
    sendJson(res, 200, {
      items: page.items.map(credentials),
      ...(page.next ? { next: page.next } : {}),
    });
  });
}

/** The entity tags of an If-None-Match header (RFC 9110 §13.1.2), quotes and weak prefixes taken off. */
function heldTags(header: string | undefined): string[] {
  if (header === undefined) return [];
  return header.split(',').map((t) => t.trim().replace(/^W\//, '').replace(/^"|"$/g, '')).filter((t) => t !== '');
}

/** Device ids one `?ids=` request may name. */
const MAX_IDS = 100;

function credentials(d: DeviceRecord): { deviceId: string; revoked: boolean; brokerHash?: string } {
  return { deviceId: d.deviceId, revoked: d.revoked, ...(d.brokerHash ? { brokerHash: d.brokerHash } : {}) };
}
