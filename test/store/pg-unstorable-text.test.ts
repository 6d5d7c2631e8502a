/**
 * PostgreSQL's refusals of text it cannot store (jsonb and a lone surrogate: 22P02; jsonb and
 * `\u0000`: 22P05; text and U+0000: 22021) are the caller's 400 in our words
 * (`mapPgError`, src/store/postgres-group-commit.ts), should such a value get past the edge's
 * checks: QA saw a lone surrogate answered 500 INTERNAL "PostgreSQL: invalid input syntax for
 * type json" and a NUL answered in the database's words. Real PostgreSQL (test/helpers/postgres.ts).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { UpdraftError } from '../../src/errors.ts';
import { mapPgError, UNSTORABLE_TEXT } from '../../src/store/postgres-group-commit.ts';
import { PostgresStore } from '../../src/store/postgres-store.ts';
import type { ShadowRecord } from '../../src/store/state-store.ts';
import { startTestPostgres, unavailable, type TestPostgres } from '../helpers/postgres.ts';

const shadow = (deviceId: string, reported: Record<string, string>): ShadowRecord => ({ deviceId, name: '', version: 1, deleted: false, state: { reported }, metadata: {}, timestamp: 100 });

/** The code and message a store call is refused with. */
async function refusal(p: Promise<unknown>): Promise<[string, string]> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof UpdraftError, String(err));
    return [err.code, err.message];
  }
  assert.fail('not refused');
}

describe('mapPgError and text PostgreSQL cannot store', () => {
  it('maps 22P02, 22P05 and 22021 to BAD_REQUEST in our words, keeping the error as the cause', () => {
    for (const code of ['22P02', '22P05', '22021']) {
      const pgError = Object.assign(new Error('invalid input syntax for type json'), { code });
      const e = mapPgError(pgError);
      assert.deepEqual([e.code, e.status, e.message], ['BAD_REQUEST', 400, UNSTORABLE_TEXT], code);
      assert.equal(e.cause, pgError);
    }
    // a statement of ours that fails is still a fault of ours
    assert.equal(mapPgError(Object.assign(new Error('syntax error'), { code: '42601' })).code, 'INTERNAL');
  });

  let pg: TestPostgres | undefined;
  let skip: string | undefined;
  let store: PostgresStore | undefined;
  before(async () => {
    const started = await startTestPostgres();
    if (!started.ok) skip = unavailable(started, 'PostgreSQL text refusal test');
    else {
      pg = started.server;
      store = new PostgresStore({ url: await pg.createDatabase() });
      await store.start();
    }
  });
  after(async () => {
    await store?.stop();
    await pg?.stop();
  });

  it('refuses a write or a read holding a lone surrogate or a NUL with 400 in our words, and stores nothing', async (t) => {
    if (skip || !store) return t.skip(skip);
    const s = store;
    assert.deepEqual(await refusal(s.putShadow(shadow('lone', { x: '\ud800x' }), 0)), ['BAD_REQUEST', UNSTORABLE_TEXT]);
    assert.deepEqual(await refusal(s.putShadow(shadow('nul', { x: 'a\u0000b' }), 0)), ['BAD_REQUEST', UNSTORABLE_TEXT]);
    assert.deepEqual(await refusal(s.getDevice('a\u0000b')), ['BAD_REQUEST', UNSTORABLE_TEXT]);
    assert.equal(await s.getShadow('lone', ''), undefined);
    assert.equal(await s.getShadow('nul', ''), undefined);
    // a surrogate pair is stored
    assert.equal(await s.putShadow(shadow('pair', { x: '\ud83d\ude00' }), 0), true);
    assert.equal((await s.getShadow('pair', ''))?.state.reported?.['x'], '😀');
  });
});
