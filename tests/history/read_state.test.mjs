// schema/006_read_state.sql and 007_exact_new_pairs.sql against a real PostgreSQL 15:
// imgw_read (forward only, clamped onto a message of the conversation, always answers),
// imgw_chat_list (read markers and unread ids that always agree with the counts), and the
// counts themselves with concurrent writers and readers.
import { after, before, describe, it } from '../lib/test.mjs';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startPostgres } from '../lib/postgres.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const rows = (out) => (out === '' ? [] : out.split('\n').map((l) => l.split('|')));

describe('schema 006: imgw_read, imgw_chat_list', () => {
  let pg;
  before(async () => { pg = await startPostgres({ db: 'imgw' }); });
  after(async () => { await pg?.cleanup(); });

  const fresh = async (name) => {
    await pg.psql(`DROP DATABASE IF EXISTS ${name}; CREATE DATABASE ${name}`, { db: 'postgres' });
    const r = await new Promise((resolve) => execFile(path.join(root, 'schema/migrate.sh'),
      [`host=${pg.host} port=${pg.port} dbname=${name} user=postgres`], (err, out, e) => resolve({ err, e })));
    assert.equal(r.err, null, r.e);
    return (sql) => pg.psql(sql, { db: name });
  };
  const read = (q, u, p, id) => q(`SELECT last_read_id, unread, moved FROM imgw_read('${u}', '${p}', ${id})`);
  const list = async (q, u, idsMax = 100) => rows(await q(`SELECT peer_jid, unread, last_read_id, coalesce(unread_ids, '<null>') FROM imgw_chat_list('${u}', 50, ${idsMax})`));

  it('moves forward onto messages of the conversation, clamps, answers the marker when nothing moves', async () => {
    const q = await fresh('clamp');
    await q(`INSERT INTO messages (id, sender, recipient, body, stanza_id) VALUES
      (10, 'b@x', 'a@x', 'm1', 's1'), (20, 'b@x', 'a@x', 'm2', 's2'), (25, 'c@x', 'a@x', 'other', 's3'),
      (30, 'b@x', 'a@x', 'm3', 's4'), (40, 'b@x', 'a@x', 'm4', 's5')`);
    assert.deepEqual(await list(q, 'a@x'), [['b@x', '4', '0', '10 20 30 40'], ['c@x', '1', '0', '25']]);
    assert.equal(await read(q, 'a@x', 'b@x', 30), '30|1|t');
    assert.equal(await read(q, 'a@x', 'b@x', 10), '30|1|f', 'backwards: the marker stays');
    assert.equal(await read(q, 'a@x', 'b@x', 5), '30|1|f', 'below every message');
    assert.equal(await read(q, 'a@x', 'b@x', 35), '30|1|f', 'clamped onto 30: no move');
    assert.equal(await read(q, 'a@x', 'c@x', 24), '0|1|f', 'no message of c at or below 24');
    assert.equal(await read(q, 'a@x', 'c@x', 26), '25|0|t', 'an id of no message: clamped to 25');
    assert.equal(await read(q, 'a@x', 'nobody@x', 99), '', 'no conversation: no row');
    assert.deepEqual(await list(q, 'a@x'), [['b@x', '1', '30', '40'], ['c@x', '0', '25', '']]);
    assert.equal(await read(q, 'a@x', 'b@x', '9223372036854775807'), '40|0|t');
    assert.deepEqual(await list(q, 'a@x', 0), [['b@x', '0', '40', ''], ['c@x', '0', '25', '']]);
    await q(`INSERT INTO messages (id, sender, recipient, body, stanza_id) VALUES
      (50, 'b@x', 'a@x', 'm5', 's6'), (60, 'b@x', 'a@x', 'm6', 's7'), (70, 'c@x', 'a@x', 'c2', 's8')`);
    assert.deepEqual(await list(q, 'a@x', 3), [['c@x', '1', '25', '70'], ['b@x', '2', '40', '50 60']]);
    // More unread than ids_max in all: no ids anywhere (one call lists at most ids_max).
    assert.deepEqual(await list(q, 'a@x', 2), [['c@x', '1', '25', '<null>'], ['b@x', '2', '40', '<null>']]);
  });

  // 007 takes an advisory lock (one of 64 per conversation key) for every conversation
  // of the batch with a state row missing in either direction; 008 rewrote that statement
  // as primary-key probes and must take exactly the same locks.
  it('a batch takes the advisory locks of exactly the conversations it begins (007, 008)', async () => {
    const q = await fresh('locks');
    const bucket = async (a, b) => q(`SELECT hashtext(imgw_conv_key('${a}', '${b}')) & 63`);
    await q(`INSERT INTO messages (id, sender, recipient, body, stanza_id) VALUES
      (1, 'old@x', 'peer@x', 'm', 'l1'), (2, 'half@x', 'peer@x', 'm', 'l2')`);
    // One direction of the second conversation gone (an analyst's DELETE): it counts as begun.
    await q(`DELETE FROM conversation_state WHERE user_jid = 'peer@x' AND peer_jid = 'half@x'`);
    const inTx = (vals) => q(`BEGIN;
      INSERT INTO messages (id, sender, recipient, body, stanza_id) VALUES ${vals};
      SELECT 'adv', objid FROM pg_locks WHERE locktype = 'advisory' AND classid = 1768777591
        AND pid = pg_backend_pid() ORDER BY objid;
      ROLLBACK;`);
    // Only existing conversations, both directions present: no advisory lock at all.
    const only = await inTx(`(10, 'peer@x', 'old@x', 'm', 'l10'), (11, 'old@x', 'peer@x', 'm', 'l11')`);
    assert.deepEqual(rows(only).filter((r) => r[0] === 'adv'), []);
    const want = [...new Set([await bucket('new@x', 'peer@x'), await bucket('half@x', 'peer@x')])]
      .map(Number).sort((a, b) => a - b).map(String);
    const mixed = await inTx(`(20, 'old@x', 'peer@x', 'm', 'l20'), (21, 'new@x', 'peer@x', 'm', 'l21'),
      (22, 'peer@x', 'new@x', 'm', 'l22'), (23, 'half@x', 'peer@x', 'm', 'l23')`);
    const adv = rows(mixed).filter((r) => r[0] === 'adv').map((r) => r[1]);
    assert.deepEqual(adv, want, 'the buckets of new@x and half@x (one direction missing), not old@x\'s alone');
    // Nothing was stored (rolled back); the counts are as before.
    assert.equal(await q(`SELECT count(*) FROM messages`), '2');
  });

  // Eight fresh databases: conversations that begin while other batches write to them
  // (ids committed out of order, both directions) are where counts went wrong (007).
  for (let round = 0; round < 8; round++) {
    it(`markers, counts and ids agree with a recount under concurrent writers and readers (${round})`, async () => {
      await concurrentRound(await fresh(`concurrent${round}`), round % 2 === 0);
    });
  }

  async function concurrentRound(q, reads) {
    const users = ['a@x', 'b@x', 'c@x'];
    const scripts = Array.from({ length: 6 }, (_, w) => {
      const out = [];
      for (let t = 0; t < 50; t++) {
        const u = users[(w + t) % 3];
        const p = users[(w + 2 * t + 1) % 3] === u ? users[(w + t + 1) % 3] : users[(w + 2 * t + 1) % 3];
        if (reads && t % 3 === 2) {
          // Any id, often one of another conversation: imgw_read clamps it.
          out.push(`SELECT * FROM imgw_read('${u}', '${p}', COALESCE((SELECT id FROM messages ORDER BY random() LIMIT 1), 0));`);
        } else {
          const vals = Array.from({ length: 1 + ((w + t) % 3) }, (_, k) => {
            const [s, r] = k % 2 ? [p, u] : [u, p];
            return `('${s}', '${r}', 'm', 'w${w}-${t}-${k}')`;
          });
          out.push(`BEGIN; INSERT INTO messages (sender, recipient, body, stanza_id) VALUES ${vals.join(', ')};
                    SELECT pg_sleep(0.001 * ${(w + t) % 3}); COMMIT;`);
        }
      }
      return out.join('\n');
    });
    await Promise.all(scripts.map((sql) => q(sql)));
    // Every marker is a message of its conversation (or an own send, or 0), and the unread
    // count and ids are exactly the peer's messages after it.
    const bad = await q(`
      SELECT cs.user_jid, cs.peer_jid, cs.unread, l.unread_ids, r.n, r.ids
      FROM conversation_state cs
      JOIN imgw_chat_list(cs.user_jid, 50, 1000) l ON l.peer_jid = cs.peer_jid
      CROSS JOIN LATERAL (
        SELECT count(*) AS n, coalesce(string_agg(m.id::text, ' ' ORDER BY m.id), '') AS ids
        FROM messages m WHERE m.conv = cs.conv AND m.sender = cs.peer_jid AND m.id > cs.last_read_id) r
      WHERE cs.unread <> r.n OR l.unread_ids <> r.ids OR l.unread <> cs.unread
         OR (cs.last_read_id <> 0 AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.conv = cs.conv AND m.id = cs.last_read_id))`);
    assert.equal(bad, '');
    assert.equal(await q(`SELECT count(*) FROM conversation_state`), '6');
  }
});
