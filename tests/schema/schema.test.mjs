// Schema tests against a real PostgreSQL 15: migrations, partitions,
// de-duplication, verbatim bodies, conversation_state, report views, and the
// gateway SQL quoted in schema/README.md.
//
//   node --test tests/schema/

import { test, before, after } from '../lib/test.mjs';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startPostgres } from '../lib/postgres.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const MIGRATE = path.join(root, 'schema/migrate.sh');

let pg;

before(async () => { pg = await startPostgres({ db: 'imgw' }); });
after(async () => { await pg?.cleanup(); });

function migrate(connString) {
  return new Promise((resolve) => {
    execFile(MIGRATE, [connString], { encoding: 'utf8' }, (err, stdout, stderr) => {
      resolve({ code: err ? (err.code ?? 1) : 0, stdout, stderr });
    });
  });
}

const conn = (db) => `host=${pg.host} port=${pg.port} dbname=${db} user=postgres`;

/** A fresh, migrated database, so tests do not see each other's rows. */
async function freshDb(name) {
  await pg.psql(`DROP DATABASE IF EXISTS ${name}; CREATE DATABASE ${name}`, { db: 'postgres' });
  const r = await migrate(conn(name));
  assert.equal(r.code, 0, r.stderr);
  await pg.psql(`ALTER DATABASE ${name} SET TimeZone = 'UTC'`, { db: name });
  return (sql, o = {}) => pg.psql(sql, { ...o, db: name });
}

/** Rows of psql -A -t output as arrays of fields. */
const rows = (out) => (out === '' ? [] : out.split('\n').map((l) => l.split('|')));

// Every migration file in schema/, in order: the tests follow the directory.
const MIGRATIONS = (await fs.readdir(path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'schema')))
  .filter((f) => /^\d{3}_.*\.sql$/.test(f)).sort();
const VERSIONS = MIGRATIONS.map((f) => String(Number(f.slice(0, 3))));

test('migrations apply on an empty database and a second run is a no-op', async () => {
  const first = await migrate(pg.connString);
  assert.equal(first.code, 0, first.stderr);
  assert.match(first.stderr, /applying 001_init\.sql/);
  assert.match(first.stderr, /applying 002_reports\.sql/);
  assert.match(first.stderr, /applying 003_exact_unread\.sql/);

  const before2 = await pg.psql('SELECT version, applied_at FROM schema_migrations ORDER BY 1');
  assert.deepEqual(rows(before2).map((r) => r[0]), VERSIONS);
  const objects = `SELECT string_agg(relname || ':' || relkind::text, ',' ORDER BY relname) FROM pg_class
                   WHERE relnamespace = 'public'::regnamespace`;
  const objs1 = await pg.psql(objects);
  for (const t of ['messages:p', 'message_ids:r', 'conversation_state:r', 'users:r',
    'messages_default:r', 'report_daily_volume:v', 'report_first_response:v', 'report_unanswered:v']) {
    assert.ok(objs1.split(',').includes(t), `${t} missing in ${objs1}`);
  }

  const second = await migrate(pg.connString);
  assert.equal(second.code, 0, second.stderr);
  assert.doesNotMatch(second.stderr, /applying/);
  assert.equal(await pg.psql('SELECT version, applied_at FROM schema_migrations ORDER BY 1'), before2);
  assert.equal(await pg.psql(objects), objs1);
});

test('a failing migration rolls back and exits non-zero', async () => {
  const dir = await fs.mkdtemp('/tmp/imgw-mig-');
  try {
    await fs.copyFile(path.join(root, 'schema/001_init.sql'), path.join(dir, '001_init.sql'));
    await fs.writeFile(path.join(dir, '002_bad.sql'), 'CREATE TABLE half_done (x int);\nSELECT 1/0;\n');
    await pg.psql('DROP DATABASE IF EXISTS failing; CREATE DATABASE failing', { db: 'postgres' });
    const r = await new Promise((resolve) => execFile(MIGRATE, [conn('failing')],
      { env: { ...process.env, MIGRATIONS_DIR: dir }, encoding: 'utf8' },
      (err, stdout, stderr) => resolve({ code: err ? err.code : 0, stderr })));
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /division by zero/);
    assert.equal(await pg.psql('SELECT version FROM schema_migrations', { db: 'failing' }), '1');
    assert.equal(await pg.psql("SELECT to_regclass('half_done') IS NULL", { db: 'failing' }), 't');
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
});

test('two concurrent migrate.sh runs do not race', async () => {
  for (let round = 0; round < 3; round++) {
    const db = `race${round}`;
    await pg.psql(`DROP DATABASE IF EXISTS ${db}; CREATE DATABASE ${db}`, { db: 'postgres' });
    const [a, b] = await Promise.all([migrate(conn(db)), migrate(conn(db))]);
    assert.equal(a.code, 0, a.stderr);
    assert.equal(b.code, 0, b.stderr);
    // Each migration was applied by exactly one of the two.
    const applied = (a.stderr + b.stderr).match(/applying \S+/g).sort();
    assert.deepEqual(applied, MIGRATIONS.map((f) => `applying ${f}`));
    assert.equal(await pg.psql(`SELECT count(*) FROM pg_class WHERE relname = 'messages'`, { db }), '1');
    assert.equal(await pg.psql('SELECT string_agg(version::text, \',\' ORDER BY version) FROM schema_migrations', { db }), VERSIONS.join(','));
  }
});

test('partitions are created ahead and rows in the default partition are moved', async () => {
  const q = await freshDb('parts');
  const list = `SELECT string_agg(c.relname, ',' ORDER BY c.relname) FROM pg_inherits i
                JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'messages'::regclass`;
  const month = (k) => q(`SELECT 'messages_p' || to_char(date_trunc('month', now() AT TIME ZONE 'UTC') + interval '${k} months', 'YYYY_MM')`);
  const expected = ['messages_default'];
  for (let k = 0; k <= 3; k++) expected.push(await month(k));
  assert.deepEqual((await q(list)).split(','), expected.sort());

  assert.equal(await q('SELECT imgw_ensure_partitions(3)'), '0');
  assert.equal(await q('SELECT imgw_ensure_partitions(6, 1)'), '4');
  assert.equal(await q('SELECT imgw_ensure_partitions(6, 1)'), '0');
  assert.ok((await q(list)).split(',').includes(await month(-1)));
  assert.ok((await q(list)).split(',').includes(await month(6)));

  // Bounds are UTC month starts.
  const bound = await q(`SELECT pg_get_expr(c.relpartbound, c.oid) FROM pg_class c WHERE relname = '${await month(1)}'`);
  assert.match(bound, /FROM \('\d{4}-\d\d-01 00:00:00\+00'\) TO \('\d{4}-\d\d-01 00:00:00\+00'\)/);

  // A message ten months ahead lands in the default partition, and moves
  // into its own partition when that is created.
  await q(`INSERT INTO messages (sender, recipient, body, stanza_id, created_at)
           VALUES ('a@x', 'b@x', 'future', 'f1', date_trunc('month', now()) + interval '10 months 3 days')`);
  assert.equal(await q(`SELECT tableoid::regclass FROM messages WHERE stanza_id = 'f1'`), 'messages_default');
  assert.equal(await q('SELECT imgw_ensure_partitions(10)'), '4');
  assert.equal(await q(`SELECT tableoid::regclass FROM messages WHERE stanza_id = 'f1'`), await month(10));
  assert.equal(await q('SELECT count(*) FROM messages_default'), '0');
  // The moved partition still de-duplicates and keeps its indexes.
  assert.equal(await q(`INSERT INTO messages (sender, recipient, body, stanza_id, created_at)
           VALUES ('a@x', 'b@x', 'future', 'f1', now()) RETURNING id`), '');
  assert.equal(await q(`SELECT count(*) FROM pg_indexes WHERE tablename = '${await month(10)}'`), '3');
});

test('duplicate stanza_id is a no-op, in another batch, the same batch and another month', async () => {
  const q = await freshDb('dedup');
  const ins = (values) => q(`INSERT INTO messages (sender, recipient, body, stanza_id, created_at)
                             VALUES ${values} ON CONFLICT DO NOTHING RETURNING stanza_id`);
  assert.equal(await ins(`('b@s', 's@s', 'one', 'sid-1', now())`), 'sid-1');
  assert.equal(await ins(`('b@s', 's@s', 'one again', 'sid-1', now())`), '');
  // psql's command tag says the same: INSERT 0 0.
  const tag = await q(`INSERT INTO messages (sender, recipient, body, stanza_id) VALUES ('b@s', 's@s', 'x', 'sid-1')
                       ON CONFLICT DO NOTHING`, { tuplesOnly: false });
  assert.equal(tag, '');
  const tag2 = await q(`\\set QUIET off\nINSERT INTO messages (sender, recipient, body, stanza_id) VALUES ('b@s', 's@s', 'x', 'sid-1')
                        ON CONFLICT DO NOTHING;`);
  assert.equal(tag2, 'INSERT 0 0');
  assert.equal(await ins(`('b@s', 's@s', 'a', 'sid-2', now()), ('b@s', 's@s', 'b', 'sid-2', now()), ('b@s', 's@s', 'c', 'sid-3', now())`),
    'sid-2\nsid-3');
  assert.equal(await ins(`('b@s', 's@s', 'old', 'sid-3', now() - interval '13 months')`), '');
  assert.equal(await q('SELECT count(*) FROM messages'), '3');
  assert.equal(await q('SELECT count(*) FROM message_ids'), '3');
  assert.equal(await q(`SELECT body FROM messages WHERE stanza_id = 'sid-2'`), 'a');
  // conversation_state counted only the stored messages.
  assert.equal(await q(`SELECT unread FROM conversation_state WHERE user_jid = 's@s'`), '3');
  // Another message reusing an id is refused.
  const id = await q(`SELECT id FROM messages WHERE stanza_id = 'sid-3'`);
  await assert.rejects(q(`INSERT INTO messages (id, sender, recipient, body, stanza_id) VALUES (${id}, 'b@s', 's@s', 'x', 'sid-4')`),
    /duplicate key value violates unique constraint "message_ids_id_key"/);
  // Concurrent inserts of the same stanza id: exactly one stores it.
  const racers = await Promise.all(Array.from({ length: 8 }, (_, i) =>
    ins(`('b@s', 's@s', 'race ${i}', 'sid-race', now())`)));
  assert.equal(racers.filter((r) => r === 'sid-race').length, 1);
  assert.equal(await q(`SELECT count(*) FROM messages WHERE stanza_id = 'sid-race'`), '1');
});

const NASTY = [
  `it's "quoted" and 'single' and \`back\``,
  'back\\slash \\\\ double \\n not a newline \\x00 \\u0000',
  'emoji 😀👍🏽 family 👨‍👩‍👧‍👦 flag 🇩🇪 and 𝕏 (4-byte)',
  'controls \x01\x02\x07\x08\t\x0b\x0c\x1b[31m\x1f\x7f end',
  'lines\r\nwindows\nunix\rold mac\n',
  `'); DROP TABLE messages; --`,
  `$$ dollar $$ $body$ $a$ $1 :'var' :"ident" :var \\! echo pwned \\gexec`,
  'E\'\\047\' U&\'\\0041\' \'\' ; COMMIT; BEGIN',
  'rtl \u202e txet \u200b zero width \ufeff bom \u00a0 nbsp',
  ' leading and trailing spaces ',
  '',
  '<message><body>xml &amp; &lt;</body></message>',
  '{"op":"send","body":"json \\" escaped"}',
  'x'.repeat(70000),
];

test('bodies are stored verbatim, byte for byte', async () => {
  const q = await freshDb('verbatim');
  for (const [i, body] of NASTY.entries()) {
    // Through a psql variable, quoted by psql as a literal.
    await q(`INSERT INTO messages (sender, recipient, body, client_id, stanza_id)
             VALUES ('b@s', 's@s', :'body', :'body', 'v-var-${i}')`, { vars: { body } });
    // Through dollar quoting with a tag that does not occur in the body.
    let tag = 'q';
    while (body.includes(`$${tag}$`)) tag += 'q';
    await q(`INSERT INTO messages (sender, recipient, body, stanza_id)
             VALUES ('b@s', 's@s', $${tag}$${body}$${tag}$, 'v-dollar-${i}')`);
  }
  const back = rows(await q(`SELECT stanza_id, encode(convert_to(body, 'UTF8'), 'hex'),
                                    coalesce(encode(convert_to(client_id, 'UTF8'), 'hex'), '-')
                             FROM messages ORDER BY id`));
  assert.equal(back.length, NASTY.length * 2);
  for (const [sid, hex, cid] of back) {
    const i = Number(sid.split('-').pop());
    const want = Buffer.from(NASTY[i], 'utf8').toString('hex');
    assert.equal(hex, want, `body ${i} via ${sid}`);
    if (sid.startsWith('v-var')) assert.equal(cid, want, `client_id ${i}`);
  }
  // The preview in conversation_state is the last body's first 200 characters.
  const last = NASTY[NASTY.length - 1];
  assert.equal(await q(`SELECT encode(convert_to(last_preview, 'UTF8'), 'hex') FROM conversation_state WHERE user_jid = 's@s'`),
    Buffer.from(last.slice(0, 200)).toString('hex'));
  // The messages table survived the SQL fragments.
  assert.equal(await q('SELECT count(*) FROM messages'), String(NASTY.length * 2));
});

test('kind and JIDs are checked', async () => {
  const q = await freshDb('checks');
  await assert.rejects(q(`INSERT INTO messages (sender, recipient, body, kind, stanza_id) VALUES ('a@x', 'b@x', 'x', 'video', 'k1')`),
    /messages_kind_check/);
  await assert.rejects(q(`INSERT INTO messages (sender, recipient, body, stanza_id) VALUES ('a@x/web', 'b@x', 'x', 'k2')`),
    /check constraint/);
  await assert.rejects(q(`INSERT INTO messages (sender, recipient, body, stanza_id) VALUES ('a@x', 'b@x', 'x', NULL)`),
    /null value in column "stanza_id"/);
  assert.equal(await q(`INSERT INTO messages (sender, recipient, body, kind, stanza_id) VALUES ('a@x', 'b@x', 'http://i/x.png', 'image', 'k3') RETURNING kind`), 'image');
  // The failed inserts left no claim behind in message_ids.
  assert.equal(await q('SELECT string_agg(stanza_id, \',\') FROM message_ids'), 'k3');
  assert.equal(await q(`SELECT imgw_conv_key('z@x', 'a@x') || '|' || imgw_conv_key('a@x', 'z@x') || '|' || imgw_conv_key('B@x', 'a@x')`),
    'a@x z@x|a@x z@x|B@x a@x');
});

// Hand-made history, all times UTC:
//   b1 -> s1  2026-03-02 10:00:00, 10:00:30; s1 answers 10:01:30 (90 s after the first)
//   b1 -> s1  10:05:00; s1 10:06:00
//   b1 -> s1  2026-03-03 23:59:00; s1 answers 2026-03-04 00:01:00 (120 s, across midnight)
//   s1 -> b1  2026-03-04 00:02:00; b1 -> s1 08:00:00 unanswered
//   b2 -> s2  2026-03-02 12:00:00 unanswered; s2 never writes
//   s1 -> b2  2026-03-02 09:00:00 (seller first; no buyer message, no row)
//   b3 -> s3  now() - 10 minutes (unanswered, but only for 10 minutes)
//   x@other -> s1 2026-03-02 11:00:00 (sender not in users: in volume, not in buyer/seller reports)
const HISTORY = `
INSERT INTO users (jid, type, display_name) VALUES
  ('b1@shop.example', 'buyer', 'Buyer 1'), ('b2@shop.example', 'buyer', 'Buyer 2'),
  ('b3@shop.example', 'buyer', NULL),
  ('s1@shop.example', 'seller', 'Seller 1'), ('s2@shop.example', 'seller', 'Seller 2'),
  ('s3@shop.example', 'seller', NULL);
INSERT INTO messages (sender, recipient, body, stanza_id, created_at) VALUES
  ('s1@shop.example', 'b2@shop.example', 'new stock!', 'h0', '2026-03-02 09:00:00Z'),
  ('b1@shop.example', 's1@shop.example', 'hi', 'h1', '2026-03-02 10:00:00Z'),
  ('b1@shop.example', 's1@shop.example', 'anyone?', 'h2', '2026-03-02 10:00:30Z'),
  ('s1@shop.example', 'b1@shop.example', 'hello', 'h3', '2026-03-02 10:01:30Z'),
  ('b1@shop.example', 's1@shop.example', 'price?', 'h4', '2026-03-02 10:05:00Z'),
  ('x@other.example', 's1@shop.example', 'spam', 'h4x', '2026-03-02 11:00:00Z'),
  ('s1@shop.example', 'b1@shop.example', '10 EUR', 'h5', '2026-03-02 10:06:00Z'),
  ('b2@shop.example', 's2@shop.example', 'hello?', 'h6', '2026-03-02 12:00:00Z');
INSERT INTO messages (sender, recipient, body, stanza_id, created_at) VALUES
  ('b1@shop.example', 's1@shop.example', 'late question', 'h7', '2026-03-03 23:59:00Z');
INSERT INTO messages (sender, recipient, body, stanza_id, created_at) VALUES
  ('s1@shop.example', 'b1@shop.example', 'late answer', 'h8', '2026-03-04 00:01:00Z'),
  ('s1@shop.example', 'b1@shop.example', 'anything else?', 'h9', '2026-03-04 00:02:00Z');
INSERT INTO messages (sender, recipient, body, stanza_id, created_at) VALUES
  ('b1@shop.example', 's1@shop.example', 'yes, one more', 'h10', '2026-03-04 08:00:00Z'),
  ('b3@shop.example', 's3@shop.example', 'quick one', 'h11', now() - interval '10 minutes');
`;

test('report views return the right numbers on a hand-made history', async () => {
  const q = await freshDb('reports');
  await q(HISTORY);
  // Ids follow insertion order here, which is also time order per conversation.

  const fr = rows(await q(`SELECT buyer_jid, seller_jid, day, buyer_message_at, reply_at, response_seconds, response_interval
                           FROM report_first_response ORDER BY buyer_jid, day`));
  assert.deepEqual(fr, [
    ['b1@shop.example', 's1@shop.example', '2026-03-02', '2026-03-02 10:00:00+00', '2026-03-02 10:01:30+00', '90', '00:01:30'],
    ['b1@shop.example', 's1@shop.example', '2026-03-03', '2026-03-03 23:59:00+00', '2026-03-04 00:01:00+00', '120', '00:02:00'],
    ['b1@shop.example', 's1@shop.example', '2026-03-04', '2026-03-04 08:00:00+00', '', '', ''],
    ['b2@shop.example', 's2@shop.example', '2026-03-02', '2026-03-02 12:00:00+00', '', '', ''],
    ['b3@shop.example', 's3@shop.example', await q(`SELECT (now() - interval '10 minutes')::date`), await q(`SELECT created_at FROM messages WHERE stanza_id = 'h11'`), '', '', ''],
  ]);
  // The period function: 2026-03-03 only; the reply on the 4th is still found.
  assert.deepEqual(rows(await q(`SELECT day, response_seconds FROM report_first_response_between('2026-03-03', '2026-03-04')`)),
    [['2026-03-03', '120']]);
  // One seller only.
  assert.deepEqual(rows(await q(`SELECT day, buyer_jid, response_seconds FROM report_first_response_between('2026-03-01', '2026-04-01',
                                   p_seller => 's1@shop.example') ORDER BY day`)),
  [['2026-03-02', 'b1@shop.example', '90'], ['2026-03-03', 'b1@shop.example', '120'], ['2026-03-04', 'b1@shop.example', '']]);
  // Mean response time per seller, the way docs/reporting.md computes it.
  assert.equal(await q(`SELECT seller_jid, avg(response_seconds), count(*), count(reply_id)
                        FROM report_first_response WHERE day BETWEEN '2026-03-01' AND '2026-03-31'
                        GROUP BY 1 ORDER BY 1 LIMIT 1`), 's1@shop.example|105|3|2');

  const vol = rows(await q(`SELECT day, user_jid, coalesce(user_type, '-'), sent, received FROM report_daily_volume
                            WHERE day < '2026-03-05' ORDER BY day, user_jid`));
  assert.deepEqual(vol, [
    ['2026-03-02', 'b1@shop.example', 'buyer', '3', '2'],
    ['2026-03-02', 'b2@shop.example', 'buyer', '1', '1'],
    ['2026-03-02', 's1@shop.example', 'seller', '3', '4'],
    ['2026-03-02', 's2@shop.example', 'seller', '0', '1'],
    ['2026-03-02', 'x@other.example', '-', '1', '0'],
    ['2026-03-03', 'b1@shop.example', 'buyer', '1', '0'],
    ['2026-03-03', 's1@shop.example', 'seller', '0', '1'],
    ['2026-03-04', 'b1@shop.example', 'buyer', '1', '2'],
    ['2026-03-04', 's1@shop.example', 'seller', '2', '1'],
  ]);
  assert.deepEqual(rows(await q(`SELECT user_jid, sent, received FROM report_daily_volume_between('2026-03-03', '2026-03-04') ORDER BY 1`)),
    [['b1@shop.example', '1', '0'], ['s1@shop.example', '0', '1']]);
  // Days follow the session's time zone: 23:59 UTC on the 3rd is the 4th in Berlin.
  assert.equal(await q(`SET TimeZone = 'Europe/Berlin';
                        SELECT sent FROM report_daily_volume WHERE day = '2026-03-04' AND user_jid = 'b1@shop.example'`), '2');

  const un = rows(await q(`SELECT buyer_jid, seller_jid, last_message_at, waiting > interval '1 hour'
                           FROM report_unanswered ORDER BY buyer_jid`));
  assert.deepEqual(un.map((r) => [r[0], r[1], r[3]]), [
    ['b1@shop.example', 's1@shop.example', 't'],
    ['b2@shop.example', 's2@shop.example', 't'],
    ['b3@shop.example', 's3@shop.example', 'f'],
  ]);
  assert.equal(await q(`SELECT string_agg(buyer_jid, ',' ORDER BY buyer_jid) FROM report_unanswered(interval '1 hour')`),
    'b1@shop.example,b2@shop.example');
  assert.equal(await q(`SELECT string_agg(buyer_jid, ',' ORDER BY buyer_jid) FROM report_unanswered(interval '5 minutes')`),
    'b1@shop.example,b2@shop.example,b3@shop.example');
  // The seller answers: b2 leaves the report.
  await q(`INSERT INTO messages (sender, recipient, body, stanza_id) VALUES ('s2@shop.example', 'b2@shop.example', 'sorry!', 'h12')`);
  assert.equal(await q(`SELECT string_agg(buyer_jid, ',' ORDER BY buyer_jid) FROM report_unanswered(interval '1 hour')`),
    'b1@shop.example');
});

/** The SQL blocks of schema/README.md marked <!-- sql:NAME -->. */
async function readmeSql() {
  const md = await fs.readFile(path.join(root, 'schema/README.md'), 'utf8');
  const out = {};
  for (const m of md.matchAll(/<!-- sql:(\w+) -->\s*```sql\n([\s\S]*?)```/g)) out[m[1]] = m[2].trim();
  return out;
}

test('gateway SQL from schema/README.md: insert, page, chat list, mark read, recovery', async () => {
  const sql = await readmeSql();
  assert.deepEqual(Object.keys(sql).sort(), ['chat_list', 'insert_arrays', 'insert_values', 'mark_read', 'page', 'recover']);
  const q = await freshDb('gateway');
  await q(HISTORY);
  const prep = Object.entries(sql).map(([k, v]) => `PREPARE ${k} AS ${v};`).join('\n');
  const x = (stmt) => q(`${prep}\n${stmt}`);

  // Batched insert, both forms; the duplicate comes back as no row.
  const ids = await q(`SELECT nextval('message_id_seq') FROM generate_series(1, 3)`);
  const [i1, i2, i3] = ids.split('\n');
  assert.equal(await x(`EXECUTE insert_values(${i1}, 'b1@shop.example', 's1@shop.example', 'batch 1', 'text', 'c1', 'g1', now(),
                                              ${i2}, 'b1@shop.example', 's1@shop.example', 'batch 1 again', 'text', 'c1', 'h1', now())`),
    `${i1}|g1`);
  const arr = (a) => `'{${a.map((v) => (v === null ? 'NULL' : `"${String(v).replace(/[\\"]/g, '\\$&')}"`)).join(',')}}'`;
  assert.equal(await x(`EXECUTE insert_arrays(${arr([i3, i3])}, ${arr(['s1@shop.example', 's1@shop.example'])},
      ${arr(['b1@shop.example', 'b1@shop.example'])}, ${arr(['with "quotes" \\ and, comma', 'dup'])}, ${arr(['text', 'text'])},
      ${arr([null, null])}, ${arr(['g2', 'g2'])}, ${arr(['2026-03-05 10:00:00Z', '2026-03-05 10:00:00Z'])})`),
  `${i3}|g2`);
  assert.equal(await q(`SELECT body FROM messages WHERE stanza_id = 'g2'`), 'with "quotes" \\ and, comma');

  // Pages of the b1-s1 conversation, newest first, either JID order.
  const all = (await q(`SELECT id FROM messages WHERE conv = 'b1@shop.example s1@shop.example' ORDER BY id DESC`)).split('\n');
  assert.equal(all.length, 11);
  const page1 = rows(await x(`EXECUTE page('s1@shop.example', 'b1@shop.example', 9223372036854775807, 4)`));
  assert.deepEqual(page1.map((r) => r[0]), all.slice(0, 4));
  const page2 = rows(await x(`EXECUTE page('b1@shop.example', 's1@shop.example', ${page1[3][0]}, 100)`));
  assert.deepEqual(page2.map((r) => r[0]), all.slice(4));

  // Chat list of s1: b1 (latest), x@other, b2 — with unread counts and previews.
  const list = rows(await x(`EXECUTE chat_list('s1@shop.example', 9223372036854775807, 50)`));
  assert.deepEqual(list.map((r) => [r[0], r[1], r[7], r[9]]), [
    ['b1@shop.example', 'Buyer 1', 'with "quotes" \\ and, comma', '0'],
    ['x@other.example', '', 'spam', '1'],
    ['b2@shop.example', 'Buyer 2', 'new stock!', '0'],
  ]);
  // b1's view: unread are s1's messages after b1's last own message (g1).
  const b1 = rows(await x(`EXECUTE chat_list('b1@shop.example', 9223372036854775807, 50)`));
  assert.deepEqual(b1.map((r) => [r[0], r[9]]), [['s1@shop.example', '1']]);
  // Keyset paging of the chat list.
  assert.deepEqual(rows(await x(`EXECUTE chat_list('s1@shop.example', ${list[0][3]}, 1)`)).map((r) => r[0]), ['x@other.example']);

  // Mark read: s2 has b2's 'hello?' unread.
  const s2 = rows(await x(`EXECUTE chat_list('s2@shop.example', 9223372036854775807, 50)`));
  assert.deepEqual(s2.map((r) => [r[0], r[9]]), [['b2@shop.example', '1']]);
  assert.equal(await x(`EXECUTE mark_read('s2@shop.example', 'b2@shop.example', ${s2[0][3]})`), `${s2[0][3]}|0`);
  assert.equal(await x(`EXECUTE mark_read('s2@shop.example', 'b2@shop.example', ${s2[0][3]})`), '', 'second mark is a no-op');

  // Partial mark read: b1 gets three messages from s1, reads the first.
  await q(`INSERT INTO messages (sender, recipient, body, stanza_id) VALUES
             ('s1@shop.example', 'b1@shop.example', 'm1', 'p1'), ('s1@shop.example', 'b1@shop.example', 'm2', 'p2'),
             ('s1@shop.example', 'b1@shop.example', 'm3', 'p3')`);
  assert.equal(await q(`SELECT unread FROM conversation_state WHERE user_jid = 'b1@shop.example'`), '4');
  const p1 = await q(`SELECT id FROM messages WHERE stanza_id = 'p1'`);
  assert.equal(await x(`EXECUTE mark_read('b1@shop.example', 's1@shop.example', ${p1})`), `${p1}|2`);
  // Past the end: clamped to the last message.
  const p3 = await q(`SELECT id FROM messages WHERE stanza_id = 'p3'`);
  assert.equal(await x(`EXECUTE mark_read('b1@shop.example', 's1@shop.example', ${BigInt(p3) + 1000n})`), `${p3}|0`);

  // Recovery: everything b1 has after g1, in id order, limited.
  const g1 = await q(`SELECT id FROM messages WHERE stanza_id = 'g1'`);
  const want = (await q(`SELECT id FROM messages WHERE (sender = 'b1@shop.example' OR recipient = 'b1@shop.example') AND id > ${g1} ORDER BY id`)).split('\n');
  assert.equal(want.length, 4);
  assert.deepEqual(rows(await x(`EXECUTE recover('b1@shop.example', ${g1}, 500)`)).map((r) => r[0]), want);
  assert.deepEqual(rows(await x(`EXECUTE recover('b1@shop.example', ${g1}, 2)`)).map((r) => r[0]), want.slice(0, 2));
  assert.equal(await x(`EXECUTE recover('b1@shop.example', ${p3}, 500)`), '');
  // s1 has several conversations: recovery merges them in id order.
  const s1want = (await q(`SELECT id FROM messages WHERE (sender = 's1@shop.example' OR recipient = 's1@shop.example') AND id > 0 ORDER BY id`)).split('\n');
  assert.deepEqual(rows(await x(`EXECUTE recover('s1@shop.example', 0, 500)`)).map((r) => r[0]), s1want);
});

test('conversation_state matches a recount after random batches and mark-reads', async () => {
  const q = await freshDb('state');
  const users = ['a@x', 'b@x', 'c@x', 'd@x'];
  let seed = 0x9e3779b9;
  const rnd = (n) => { // xorshift32
    seed ^= seed << 13; seed ^= seed >>> 17; seed ^= seed << 5;
    return (seed >>> 0) % n;
  };
  let sid = 0;
  const stmts = [];
  for (let step = 0; step < 150; step++) {
    if (rnd(4) === 0) {
      const u = users[rnd(4)]; const p = users[rnd(4)];
      // Mark read up to a random message of theirs, possibly part way.
      stmts.push(`SELECT * FROM imgw_mark_read('${u}', '${p}',
        COALESCE((SELECT id FROM messages WHERE conv = imgw_conv_key('${u}', '${p}') ORDER BY random() LIMIT 1), 0));`);
    } else {
      const n = 1 + rnd(6);
      const vals = [];
      for (let k = 0; k < n; k++) {
        const s = users[rnd(4)]; let r = users[rnd(4)];
        if (r === s) r = users[(users.indexOf(s) + 1) % 4];
        // Now and then a duplicate of an earlier stanza.
        const st = rnd(5) === 0 && sid > 0 ? `s${rnd(sid)}` : `s${sid++}`;
        vals.push(`('${s}', '${r}', 'm', '${st}')`);
      }
      stmts.push(`INSERT INTO messages (sender, recipient, body, stanza_id) VALUES ${vals.join(', ')};`);
    }
  }
  await q(`SELECT setseed(0.5);\n${stmts.join('\n')}`);
  await assertStateConsistent(q);
  assert.equal(await q(`SELECT count(*) FROM conversation_state`), '12');
});

/** conversation_state agrees with a recount from messages. */
async function assertStateConsistent(q) {
  const bad = await q(`
    SELECT cs.user_jid, cs.peer_jid, cs.unread, r.unread, cs.last_message_id, r.last_id, cs.last_sender, r.last_sender
    FROM conversation_state cs
    CROSS JOIN LATERAL (
      SELECT count(*) FILTER (WHERE m.sender = cs.peer_jid AND m.id > cs.last_read_id) AS unread,
             max(m.id) AS last_id,
             (SELECT sender FROM messages l WHERE l.conv = cs.conv ORDER BY id DESC LIMIT 1) AS last_sender
      FROM messages m WHERE m.conv = cs.conv) r
    WHERE cs.unread <> r.unread OR cs.last_message_id <> r.last_id OR cs.last_sender <> r.last_sender`);
  assert.equal(bad, '');
  // Every conversation has both rows, and every message has a message_ids row.
  assert.equal(await q(`SELECT count(*) FROM conversation_state a LEFT JOIN conversation_state b
                        ON b.user_jid = a.peer_jid AND b.peer_jid = a.user_jid WHERE b.user_jid IS NULL`), '0');
  assert.equal(await q(`SELECT count(*) FROM messages m LEFT JOIN message_ids i USING (stanza_id, id) WHERE i.id IS NULL`), '0');
}

test('conversation_state stays exact with concurrent writers and readers', async () => {
  const q = await freshDb('concurrent');
  const users = ['a@x', 'b@x', 'c@x'];
  // Six sessions at once, each 40 transactions: batches of 1-4 messages
  // (some repeating another session's stanza id) and partial mark-reads.
  const scripts = Array.from({ length: 6 }, (_, w) => {
    const out = [];
    for (let t = 0; t < 40; t++) {
      const u = users[(w + t) % 3];
      const p = users[(w + 2 * t + 1) % 3] === u ? users[(w + t + 1) % 3] : users[(w + 2 * t + 1) % 3];
      if (t % 4 === 3) {
        out.push(`SELECT * FROM imgw_mark_read('${u}', '${p}', COALESCE((SELECT id FROM messages
                    WHERE conv = imgw_conv_key('${u}', '${p}') ORDER BY random() LIMIT 1), 0));`);
      } else {
        const n = 1 + ((w + t) % 4);
        const vals = Array.from({ length: n }, (_, k) => {
          const [s, r] = k % 2 ? [p, u] : [u, p];
          const sid = (t + k) % 5 === 0 ? `shared-${t}-${k}` : `w${w}-${t}-${k}`;
          return `('${s}', '${r}', 'm', '${sid}')`;
        });
        out.push(`INSERT INTO messages (sender, recipient, body, stanza_id) VALUES ${vals.join(', ')};`);
      }
    }
    return out.join('\n');
  });
  // A deadlock is retried, as the gateway would; none is expected.
  await Promise.all(scripts.map((sql) => q(sql)));
  await assertStateConsistent(q);
  assert.equal(await q(`SELECT count(*) FROM conversation_state`), '6');
  assert.equal(await q(`SELECT count(*) FROM messages WHERE stanza_id LIKE 'shared-%'`),
    await q(`SELECT count(DISTINCT stanza_id) FROM messages WHERE stanza_id LIKE 'shared-%'`));
});

test('mark-read racing open insert transactions keeps unread exact', async () => {
  // Writers hold their transaction open for a moment after inserting, so
  // mark-reads wait for their row lock. Without migration 3 the waiting
  // UPDATE counted with its old snapshot and unread drifted by dozens here.
  const q = await freshDb('race_read');
  const scripts = Array.from({ length: 6 }, (_, w) => {
    const out = [];
    for (let t = 0; t < 60; t++) {
      if (w % 2 === 0) {
        out.push(`SELECT * FROM imgw_mark_read('a@x', 'b@x', COALESCE((SELECT id FROM messages
                    WHERE conv = 'a@x b@x' ORDER BY id DESC LIMIT 1 OFFSET 1), 0));`);
      } else {
        out.push(`BEGIN; INSERT INTO messages (sender, recipient, body, stanza_id) VALUES ('b@x', 'a@x', 'm', '${w}-${t}');
                  SELECT pg_sleep(0.001 * ${(w * 7 + t) % 3}); COMMIT;`);
      }
    }
    return out.join('\n');
  });
  await Promise.all(scripts.map((sql) => q(sql)));
  await assertStateConsistent(q);
  assert.equal(await q(`SELECT count(*) FROM messages`), '180');
});

test('the server restarts with its data', async () => {
  const q = await freshDb('restart');
  await q(`INSERT INTO messages (sender, recipient, body, stanza_id) VALUES ('a@x', 'b@x', 'kept', 'r1')`);
  await pg.stop();
  await assert.rejects(q('SELECT 1'));
  await pg.start();
  assert.equal(await q(`SELECT body FROM messages WHERE stanza_id = 'r1'`), 'kept');
});
