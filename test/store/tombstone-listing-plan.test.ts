/**
 * The daily listing of deletions no release recorded (PostgresStore.listUnrecordedDeletions,
 * run by the tombstones' retention on the leader, inside a write batch of the group commit)
 * reads the tombstones through their partial index (shadows_tombstones), not every shadow of
 * the fleet with its state. On a real PostgreSQL, the store's query (its exported text)
 * explained over a fleet whose shadows are mostly live, analyzed first so that the planner
 * chooses as it would on a fleet; then what it lists.
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import pg from 'pg';
import { PostgresStore, UNRECORDED_DELETIONS_SQL } from '../../src/store/postgres-store.ts';
import { startTestPostgres, unavailable } from '../helpers/postgres.ts';

/** Registered devices, each with its classic shadow (a state of about 700 bytes). */
const DEVICES = 40_000;
const id = (prefix: string, i: string) => `'${prefix}' || lpad(${i}::text, 6, '0')`;

const started = await startTestPostgres();

describe('the listing of unrecorded deletions reads the tombstones only (PostgreSQL)', () => {
  if (!started.ok) {
    const message = unavailable(started, 'the tombstone listing plan check');
    it('plan', (t) => t.skip(message));
    return;
  }
  const server = started.server;
  let store: PostgresStore | undefined;
  let admin: pg.Client | undefined;
  after(async () => {
    await store?.stop();
    await admin?.end();
    await server.stop();
  });

  it('explains as a read of shadows_tombstones, no scan of the shadows, and lists the unregistered devices its list lacks', async (t) => {
    const url = await server.createDatabase();
    store = new PostgresStore({ url });
    await store.start();
    admin = new pg.Client({ connectionString: url });
    await admin.connect();
    const c = admin;
    await c.query(`INSERT INTO devices (device_id, attributes, tags, revoked, created_at, updated_at, version)
      SELECT ${id('dev-', 'i')}, '{}', '[]', false, 1, 1, 1 FROM generate_series(1, ${DEVICES}) i`);
    await c.query(`INSERT INTO shadows (device_id, name, version, deleted, state, metadata, timestamp)
      SELECT ${id('dev-', 'i')}, '', 7, false,
        jsonb_build_object('reported', jsonb_build_object('software', jsonb_build_object('name', 'fw', 'version', '1.0.0', 'status', 'SUCCESS'), 'notes', repeat(md5(i::text), 20))),
        '{}', 1700000000 FROM generate_series(1, ${DEVICES}) i`);
    // tombstones: a deleted named shadow of every 100th registered device (kept: it is registered),
    // 200 deleted devices recorded (as this release records them), 20 deleted unrecorded (as an
    // earlier release leaves them), each of those with two, the classic one the later
    await c.query(`INSERT INTO shadows (device_id, name, version, deleted, state, metadata, timestamp)
      SELECT ${id('dev-', 'i')}, 'config', 3, true, '{}', '{}', 1700000100 FROM generate_series(1, ${DEVICES}, 100) i`);
    for (const [prefix, n] of [['gone-', 200], ['old-', 20]] as const) {
      await c.query(`INSERT INTO shadows (device_id, name, version, deleted, state, metadata, timestamp)
        SELECT ${id(prefix, 'i')}, v.name, 4, true, '{}', '{}', v.at FROM generate_series(1, ${n}) i, (VALUES ('', 1700000300), ('config', 1700000200)) AS v (name, at)`);
    }
    await c.query(`INSERT INTO deleted_devices (device_id, deleted_at) SELECT ${id('gone-', 'i')}, 1700000300000 FROM generate_series(1, 200) i`);
    await c.query('ANALYZE');

    const { rows } = await c.query<{ 'QUERY PLAN': unknown }>(`EXPLAIN (FORMAT JSON) ${UNRECORDED_DELETIONS_SQL}`);
    const reads: string[] = [];
    const walk = (node: unknown): void => {
      if (Array.isArray(node)) return node.forEach(walk);
      if (node && typeof node === 'object') {
        const o = node as Record<string, unknown>;
        if (o['Relation Name'] === 'shadows') reads.push(`${String(o['Node Type'])}${typeof o['Index Name'] === 'string' ? ` ${o['Index Name']}` : ''}`);
        Object.values(o).forEach(walk);
      }
    };
    walk(rows[0]!['QUERY PLAN']);
    const seen = `the plan reads shadows by: ${reads.join(', ')}`;
    t.diagnostic(seen);
    assert.ok(reads.length > 0, seen);
    assert.ok(reads.every((r) => !r.startsWith('Seq Scan')), seen);
    // (a bitmap heap scan names no index: its bitmap index scan below it does)
    assert.ok(reads.some((r) => r.endsWith(' shadows_tombstones')), seen);
    const def = (await c.query<{ def: string; valid: boolean }>("SELECT pg_get_indexdef(i.indexrelid) AS def, i.indisvalid AS valid FROM pg_index i WHERE i.indexrelid = 'shadows_tombstones'::regclass")).rows[0];
    // device_id only: no column a shadow write changes, so those stay HOT updates
    assert.equal(def?.def, 'CREATE INDEX shadows_tombstones ON public.shadows USING btree (device_id) WHERE deleted');
    assert.equal(def?.valid, true);

    // what it lists: the 20 deleted without a record, at their last tombstone (ms); nothing else
    assert.equal(await store.listUnrecordedDeletions(), 20);
    const listed = (await c.query<{ device_id: string; deleted_at: string }>("SELECT device_id, deleted_at FROM deleted_devices WHERE device_id NOT LIKE 'gone-%' ORDER BY device_id")).rows;
    assert.deepEqual(listed.map((r) => r.device_id), Array.from({ length: 20 }, (_, i) => `old-${String(i + 1).padStart(6, '0')}`));
    assert.ok(listed.every((r) => Number(r.deleted_at) === 1700000300000), JSON.stringify(listed[0]));
    assert.equal(await store.listUnrecordedDeletions(), 0, 'listed once');
  });
});
