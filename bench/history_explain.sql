-- EXPLAIN (ANALYZE, BUFFERS) of the gateway's SQL (schema/README.md) and the
-- analysts' example queries (docs/reporting.md) on a generated history
-- (bench/gen_history.sql). Run by bench/history_run.mjs; writes nothing
-- (writes run inside a rolled-back transaction).

SET TimeZone = 'UTC';
\pset pager off
\timing on

-- Conversation 4242 of the generator: buyer 4242, seller (4242 + 0) % 2500.
\set buyer '''buyer4242@shop.example'''
\set seller '''seller1742@shop.example'''
SELECT count(*) AS conv_messages, max(id) AS conv_max_id,
       percentile_disc(0.5) WITHIN GROUP (ORDER BY id) AS conv_mid_id
FROM messages WHERE conv = imgw_conv_key(:buyer, :seller) \gset
SELECT max(id) AS max_id FROM messages \gset
SELECT date_trunc('month', now() - interval '2 months') AS month_from,
       date_trunc('month', now() - interval '1 month') AS month_to \gset
\echo conversation :buyer :seller has :conv_messages messages; month :month_from

\echo
\echo ==== page: newest 50 messages of a conversation
EXPLAIN (ANALYZE, BUFFERS)
SELECT id, sender, recipient, body, kind, client_id, created_at
FROM messages
WHERE conv = imgw_conv_key(:seller, :buyer) AND id < 9223372036854775807
ORDER BY id DESC
LIMIT 50;

\echo ==== page: 50 messages before an id in the middle of the conversation
EXPLAIN (ANALYZE, BUFFERS)
SELECT id, sender, recipient, body, kind, client_id, created_at
FROM messages
WHERE conv = imgw_conv_key(:seller, :buyer) AND id < :conv_mid_id
ORDER BY id DESC
LIMIT 50;

\echo ==== the gateway page statement (store.c page_sql) in the long conversation (history_run --long)
SELECT min(id) AS long_min, max(id) AS long_max, (min(id) + max(id)) / 2 AS long_mid
FROM messages WHERE conv = imgw_conv_key('longbuyer@shop.example', 'seller0@shop.example') \gset
PREPARE gw_page(text, text, bigint, int) AS
SELECT id, sender, recipient, body, kind, client_id,
       (extract(epoch FROM created_at) * 1000)::bigint
FROM messages WHERE conv = imgw_conv_key($1, $2) AND id < $3 ORDER BY id DESC LIMIT $4;
\echo newest page
EXPLAIN (ANALYZE, BUFFERS) EXECUTE gw_page('seller0@shop.example', 'longbuyer@shop.example', 9223372036854775807, 50);
\echo deep page: 50 before the middle id
EXPLAIN (ANALYZE, BUFFERS) EXECUTE gw_page('seller0@shop.example', 'longbuyer@shop.example', :long_mid, 50);
DEALLOCATE gw_page;

\echo ==== chat list of a seller (100 conversations), first 50
EXPLAIN (ANALYZE, BUFFERS)
SELECT cs.peer_jid, u.display_name, u.type AS peer_type,
       cs.last_message_id, cs.last_message_at, cs.last_sender, cs.last_kind,
       cs.last_preview, cs.last_read_id, cs.unread
FROM conversation_state cs
LEFT JOIN users u ON u.jid = cs.peer_jid
WHERE cs.user_jid = :seller AND cs.last_message_id < 9223372036854775807
ORDER BY cs.last_message_id DESC
LIMIT 50;

\echo ==== mark read part way (rolled back)
BEGIN;
UPDATE conversation_state SET last_read_id = 0, unread = (SELECT count(*) FROM messages m
  WHERE m.conv = imgw_conv_key(:seller, :buyer) AND m.sender = :buyer)
WHERE user_jid = :seller AND peer_jid = :buyer;
-- The UPDATE that imgw_mark_read runs after locking the row (a function's
-- inner plan does not show in EXPLAIN), then the function call itself.
EXPLAIN (ANALYZE, BUFFERS)
UPDATE conversation_state cs
SET last_read_id = LEAST(:conv_mid_id, cs.last_message_id),
    unread = CASE WHEN :conv_mid_id >= cs.last_message_id THEN 0
                  ELSE GREATEST(0, cs.unread - (
                         SELECT count(*) FROM messages m
                         WHERE m.conv = cs.conv AND m.sender = cs.peer_jid
                           AND m.id > cs.last_read_id AND m.id <= :conv_mid_id)) END,
    updated_at = now()
WHERE cs.user_jid = :seller AND cs.peer_jid = :buyer AND cs.last_read_id < LEAST(:conv_mid_id, cs.last_message_id)
RETURNING last_read_id, unread;
ROLLBACK;
BEGIN;
UPDATE conversation_state SET last_read_id = 0, unread = (SELECT count(*) FROM messages m
  WHERE m.conv = imgw_conv_key(:seller, :buyer) AND m.sender = :buyer)
WHERE user_jid = :seller AND peer_jid = :buyer;
EXPLAIN (ANALYZE, BUFFERS)
SELECT last_read_id, unread FROM imgw_mark_read(:seller, :buyer, :conv_mid_id);
ROLLBACK;

\echo ==== recovery: messages of a seller after an id, 5 conversations changed since, up to 500
SELECT last_message_id - 1 AS recover_from FROM conversation_state WHERE user_jid = :seller
ORDER BY last_message_id DESC LIMIT 1 OFFSET 4 \gset
EXPLAIN (ANALYZE, BUFFERS)
SELECT m.id, m.conv, m.sender, m.recipient, m.body, m.kind, m.client_id, m.created_at
FROM conversation_state cs
CROSS JOIN LATERAL (
  SELECT * FROM messages m
  WHERE m.conv = cs.conv AND m.id > :recover_from
  ORDER BY m.id
  LIMIT 500
) m
WHERE cs.user_jid = :seller AND cs.last_message_id > :recover_from
ORDER BY m.id
LIMIT 500;

\echo ==== batched insert of 50 messages, 10 of them duplicates (rolled back)
BEGIN;
EXPLAIN (ANALYZE, BUFFERS)
INSERT INTO messages (id, sender, recipient, body, kind, client_id, stanza_id, created_at)
SELECT nextval('message_id_seq'), 'buyer' || (g % 25000) || '@shop.example',
       'seller' || (((g % 25000) + (g / 25000) * 251) % 2500) || '@shop.example',
       'bench message ' || g, 'text', 'c' || g,
       CASE WHEN g <= 10 THEN (SELECT stanza_id FROM message_ids ORDER BY id DESC LIMIT 1 OFFSET g)
            ELSE 'bench-' || g END,
       now()
FROM generate_series(1, 50) g
ON CONFLICT DO NOTHING
RETURNING id, stanza_id;
ROLLBACK;

\echo ==== report: response time per seller, one month (top 10 slowest, 20+ conversations-days)
EXPLAIN (ANALYZE, BUFFERS)
SELECT seller_jid,
       count(*) AS buyer_days,
       count(reply_id) AS answered,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY response_seconds) AS median_s,
       percentile_cont(0.9) WITHIN GROUP (ORDER BY response_seconds) AS p90_s
FROM report_first_response_between(:'month_from', :'month_to')
GROUP BY seller_jid
HAVING count(*) >= 20
ORDER BY median_s DESC NULLS LAST
LIMIT 10;

\echo ==== report: response times of one seller, one month
EXPLAIN (ANALYZE, BUFFERS)
SELECT day, count(*) AS buyer_days, count(reply_id) AS answered, avg(response_seconds) AS mean_s
FROM report_first_response_between(:'month_from', :'month_to', p_seller => :seller)
GROUP BY day ORDER BY day;

\echo ==== report: messages per seller per day, one month (view over the function)
EXPLAIN (ANALYZE, BUFFERS)
SELECT day, user_jid, sent, received
FROM report_daily_volume_between(:'month_from', :'month_to')
WHERE user_type = 'seller'
ORDER BY day, user_jid;

\echo ==== report: sent messages of one seller per day, one month (direct, index)
EXPLAIN (ANALYZE, BUFFERS)
SELECT created_at::date AS day, count(*) AS sent
FROM messages
WHERE sender = :seller AND created_at >= :'month_from' AND created_at < :'month_to'
GROUP BY 1 ORDER BY 1;

\echo ==== report: unanswered for over 1 hour
EXPLAIN (ANALYZE, BUFFERS)
SELECT seller_jid, count(*) AS waiting_conversations, max(waiting) AS longest
FROM report_unanswered(interval '1 hour')
GROUP BY seller_jid
ORDER BY waiting_conversations DESC
LIMIT 20;

\echo ==== report: first response over all history (view)
EXPLAIN (ANALYZE, BUFFERS)
SELECT count(*), count(reply_id), avg(response_seconds) FROM report_first_response;

\echo ==== report: daily volume over all history (view)
EXPLAIN (ANALYZE, BUFFERS)
SELECT count(*), sum(sent) FROM report_daily_volume;
