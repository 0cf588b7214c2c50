-- Generate a realistic chat history for EXPLAIN and pgbench runs.
--
--   psql -X -v ON_ERROR_STOP=1 -v rows=5000000 -v months=12 -d "$CONN" -f bench/gen_history.sql
--
-- Needs an empty, migrated database (schema/migrate.sh) and a superuser
-- (session_replication_role). Deterministic (setseed), single-threaded.
--
-- Shape: 25,000 buyers, 2,500 sellers, rows/20 buyer-seller conversations
-- (each a distinct pair), 1..39 messages each (mean 20), started at random
-- times over the last `months` months. Inside a conversation messages come
-- every 20 s .. 15 min (per conversation), a new day after every 8 messages;
-- the first message is the buyer's, later ones 55 % buyer. 3 % are images.
-- Ids follow created_at over the whole history, as a sequence would.
--
-- Conversation c (0-based) is buyer (c % 25000) with seller
-- ((c % 25000) + (c / 25000) * 251) % 2500; the pgbench scripts use the same
-- formula to pick conversations.
--
-- The per-row triggers are skipped (session_replication_role = replica) and
-- their work is done set-wise at the end: message_ids, conversation_state.

\if :{?rows}
\else
\set rows 5000000
\endif
\if :{?months}
\else
\set months 12
\endif

SET client_min_messages = warning;
SET TimeZone = 'UTC';
SET session_replication_role = replica;
SET max_parallel_workers_per_gather = 0;  -- keeps random() deterministic
SELECT setseed(0.42);

SELECT imgw_ensure_partitions(3, :months);

INSERT INTO users (jid, type, display_name)
SELECT 'buyer' || i || '@shop.example', 'buyer', 'Buyer ' || i FROM generate_series(0, 24999) i
UNION ALL
SELECT 'seller' || i || '@shop.example', 'seller', 'Seller ' || i FROM generate_series(0, 2499) i;

CREATE TEMP TABLE gen_conv AS
SELECT c,
       'buyer' || (c % 25000) || '@shop.example' AS buyer,
       'seller' || (((c % 25000) + (c / 25000) * 251) % 2500) || '@shop.example' AS seller,
       1 + floor(random() * 39)::int AS n,
       now() - interval '7 days' - random() * (:months * interval '30 days') AS t0,
       interval '20 seconds' + random() * interval '15 minutes' AS gap
FROM generate_series(0, :rows / 20 - 1) c;

\timing on
INSERT INTO messages (id, conv, sender, recipient, body, kind, client_id, stanza_id, created_at)
SELECT row_number() OVER (ORDER BY x.t, x.c, x.i),
       imgw_conv_key(x.buyer, x.seller),
       CASE WHEN x.from_buyer THEN x.buyer ELSE x.seller END,
       CASE WHEN x.from_buyer THEN x.seller ELSE x.buyer END,
       CASE WHEN x.image THEN 'https://cdn.shop.example/img/' || md5(x.c || '/' || x.i) || '.jpg'
            ELSE left(md5(x.c || ':' || x.i) || ' ' ||
                      repeat('hello, is this still available? yes, ships tomorrow. ', 1 + (x.r * 4)::int),
                      12 + (x.r * 180)::int) END,
       CASE WHEN x.image THEN 'image' ELSE 'text' END,
       CASE WHEN x.r < 0.4 THEN 'web-' || x.c || '-' || x.i END,
       'gen-' || md5(x.c || '/' || x.i),
       x.t
FROM (
  SELECT g.c, g.buyer, g.seller, i,
         g.t0 + i * g.gap + random() * g.gap + (i / 8) * interval '1 day' AS t,
         (i = 1 OR random() < 0.55) AS from_buyer,
         random() < 0.03 AS image,
         random() AS r
  FROM gen_conv g, generate_series(1, g.n) i
) x;

INSERT INTO message_ids (stanza_id, id, created_at)
SELECT stanza_id, id, created_at FROM messages;

-- The state the statement trigger would have left: a user's read marker is
-- their own last message; unread counts the peer's messages after it.
CREATE TEMP TABLE gen_own AS
SELECT conv, sender AS user_jid, max(id) AS own_max FROM messages GROUP BY conv, sender;
CREATE TEMP TABLE gen_unread AS
SELECT m.conv, m.recipient AS user_jid, count(*) AS n
FROM messages m
LEFT JOIN gen_own o ON o.conv = m.conv AND o.user_jid = m.recipient
WHERE m.id > COALESCE(o.own_max, 0)
GROUP BY m.conv, m.recipient;

INSERT INTO conversation_state
  (user_jid, peer_jid, conv, last_message_id, last_message_at, last_sender,
   last_kind, last_preview, last_read_id, unread)
SELECT u.user_jid, u.peer_jid, l.conv, l.id, l.created_at, l.sender, l.kind, left(l.body, 200),
       COALESCE(o.own_max, 0), COALESCE(n.n, 0)
FROM (SELECT DISTINCT ON (conv) conv, id, created_at, sender, kind, body
      FROM messages ORDER BY conv, id DESC) l
CROSS JOIN LATERAL (VALUES (split_part(l.conv, ' ', 1), split_part(l.conv, ' ', 2)),
                           (split_part(l.conv, ' ', 2), split_part(l.conv, ' ', 1))) u (user_jid, peer_jid)
LEFT JOIN gen_own o ON o.conv = l.conv AND o.user_jid = u.user_jid
LEFT JOIN gen_unread n ON n.conv = l.conv AND n.user_jid = u.user_jid;

SELECT setval('message_id_seq', (SELECT max(id) FROM messages));
RESET session_replication_role;
VACUUM (ANALYZE) messages, message_ids, conversation_state, users;
\timing off

SELECT count(*) AS messages, min(created_at), max(created_at),
       (SELECT count(*) FROM conversation_state) AS state_rows,
       pg_size_pretty(pg_total_relation_size('message_ids')) AS message_ids_size
FROM messages;
