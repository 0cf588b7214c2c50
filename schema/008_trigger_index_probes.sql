-- imgw schema, migration 008: the insert trigger's lookups of conversation_state stay
-- index probes whatever the table's size.
--
-- 007's trigger filtered the batch with `NOT EXISTS (pair) OR NOT EXISTS (reverse pair)`
-- and locked the rows with `(user_jid, peer_jid) IN (…)`. PL/pgSQL plans each statement
-- when a session first runs it (again only after an invalidation, e.g. an ANALYZE of the
-- table), from the size of that batch and the table's statistics at that moment, and
-- with random_page_cost 4 the planner prices one primary-key
-- probe at ~8 times a heap row read in sequence. So with a few hundred rows per batch and
-- conversation_state under a few hundred thousand rows, it chose two hashed SubPlans and a
-- hash join, each a sequential scan of the whole of conversation_state, on every batch
-- (auto_explain, 282-row batch, 40,000 state rows: 20 ms for the lock statement alone);
-- the production-path bench of 2026-12-01 found it as the cost of each batch growing with
-- the table (docs/performance.md, "PostgreSQL on the production path"). A plain anti-join
-- (`UNION` of two `NOT EXISTS`, tried) was planned as probes there, but that too is a cost
-- choice between probes and a hash anti-join over a scan of the table, and it left the
-- row-lock statement's hash join over a scan as it was.
--
-- Here both statements probe the primary key once per distinct pair and direction, in a
-- LATERAL subquery the planner cannot flatten into a join (a LIMIT, resp. FOR UPDATE):
-- the cost is the batch's, not the table's. What is locked and counted is exactly 007's:
-- the advisory lock of every conversation of the batch with a state row missing in either
-- direction, the existing state rows of every pair in both directions in key order, then
-- 004's arithmetic (unchanged, copied from 007).

CREATE OR REPLACE FUNCTION imgw_messages_after_insert() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  -- Conversations this batch begins cannot be row-locked yet: advisory locks in their
  -- place, at most 64 (see 007). 1768777591 is 'imgw' in ASCII, a namespace of our own.
  -- Each distinct pair of the batch is looked up by primary key, both ways; the LIMIT
  -- keeps each lookup a parameterised index probe whatever the table's size (see above).
  PERFORM pg_advisory_xact_lock(1768777591, b.k)
  FROM (SELECT DISTINCT hashtext(n.conv) & 63 AS k
        FROM (SELECT DISTINCT sender, recipient, conv FROM new_rows) n
        LEFT JOIN LATERAL (SELECT true AS found FROM conversation_state cs
                           WHERE cs.user_jid = n.sender AND cs.peer_jid = n.recipient
                           LIMIT 1) fwd ON true
        LEFT JOIN LATERAL (SELECT true AS found FROM conversation_state cs
                           WHERE cs.user_jid = n.recipient AND cs.peer_jid = n.sender
                           LIMIT 1) rev ON true
        WHERE fwd.found IS NULL OR rev.found IS NULL) b
  ORDER BY b.k;

  -- Lock the existing rows first, in key order (see 003): against imgw_read and
  -- imgw_mark_read, which take the row lock only. The keys are sorted first and each
  -- row is locked by a primary-key probe in that order (a subquery with FOR UPDATE is
  -- never flattened into a join, so it cannot turn into a scan of the table).
  PERFORM 1
  FROM (SELECT sender AS u, recipient AS p FROM new_rows
        UNION SELECT recipient, sender FROM new_rows
        ORDER BY 1, 2) k
  CROSS JOIN LATERAL (SELECT 1 FROM conversation_state cs
                      WHERE cs.user_jid = k.u AND cs.peer_jid = k.p
                      FOR UPDATE) l;

  -- One grouping pass over the batch and no join back to the transition table:
  -- the planner cannot estimate transition tables, and a nested loop there made
  -- a 1,000-row batch cost 0.2 s. The last message of each pair comes out of the
  -- aggregate; the conversation_state lookup is by primary key.
  WITH x AS (
    SELECT sender AS user_jid, recipient AS peer_jid, conv, id, true AS own,
           created_at, sender AS msg_sender, kind, body FROM new_rows
    UNION ALL
    SELECT recipient, sender, conv, id, false, created_at, sender, kind, body FROM new_rows
  ), s AS (
    SELECT x.user_jid, x.peer_jid, x.conv, max(x.id) AS max_id,
           max(x.id) FILTER (WHERE x.own) AS max_own,
           (array_agg(x.created_at ORDER BY x.id DESC))[1] AS last_at,
           (array_agg(x.msg_sender ORDER BY x.id DESC))[1] AS last_sender,
           (array_agg(x.kind ORDER BY x.id DESC))[1] AS last_kind,
           (array_agg(left(x.body, 200) ORDER BY x.id DESC))[1] AS last_preview,
           array_agg(x.id) FILTER (WHERE NOT x.own) AS peer_ids
    FROM x GROUP BY x.user_jid, x.peer_jid, x.conv
  ), c AS (
    SELECT s.*, cs.user_jid IS NOT NULL AS existing,
           (SELECT count(*) FROM unnest(s.peer_ids) p WHERE p > COALESCE(s.max_own, 0))
             AS initial_unread,
           (SELECT count(*) FROM unnest(s.peer_ids) p WHERE p > COALESCE(cs.last_read_id, 0))
             AS added
    FROM s
    LEFT JOIN conversation_state cs ON cs.user_jid = s.user_jid AND cs.peer_jid = s.peer_jid
  )
  INSERT INTO conversation_state AS cs
    (user_jid, peer_jid, conv, last_message_id, last_message_at, last_sender,
     last_kind, last_preview, last_read_id, unread, updated_at)
  SELECT c.user_jid, c.peer_jid, c.conv, c.max_id, c.last_at, c.last_sender, c.last_kind,
         c.last_preview, COALESCE(c.max_own, 0),
         CASE WHEN c.existing THEN c.added ELSE c.initial_unread END,
         now()
  FROM c
  ORDER BY c.user_jid, c.peer_jid
  ON CONFLICT (user_jid, peer_jid) DO UPDATE SET
    last_message_id = GREATEST(cs.last_message_id, EXCLUDED.last_message_id),
    last_message_at = CASE WHEN EXCLUDED.last_message_id > cs.last_message_id
                           THEN EXCLUDED.last_message_at ELSE cs.last_message_at END,
    last_sender     = CASE WHEN EXCLUDED.last_message_id > cs.last_message_id
                           THEN EXCLUDED.last_sender ELSE cs.last_sender END,
    last_kind       = CASE WHEN EXCLUDED.last_message_id > cs.last_message_id
                           THEN EXCLUDED.last_kind ELSE cs.last_kind END,
    last_preview    = CASE WHEN EXCLUDED.last_message_id > cs.last_message_id
                           THEN EXCLUDED.last_preview ELSE cs.last_preview END,
    last_read_id    = GREATEST(cs.last_read_id, EXCLUDED.last_read_id),
    unread = CASE
      WHEN GREATEST(cs.last_read_id, EXCLUDED.last_read_id)
           >= GREATEST(cs.last_message_id, EXCLUDED.last_message_id) THEN 0
      ELSE GREATEST(0,
        cs.unread + EXCLUDED.unread
        - CASE WHEN EXCLUDED.last_read_id > cs.last_read_id THEN
            (SELECT count(*) FROM messages m
              WHERE m.conv = cs.conv AND m.sender = cs.peer_jid
                AND m.id > cs.last_read_id AND m.id <= EXCLUDED.last_read_id)
          ELSE 0 END)
      END,
    updated_at = now();
  RETURN NULL;
END $$;
