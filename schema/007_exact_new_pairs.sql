-- imgw schema, migration 007: exact unread counts for conversations that begin
-- while another batch writes to them.
--
-- The insert trigger (001, 003, 004) locks the conversation_state rows of its batch
-- before it counts, so that its count sees what earlier lock holders committed. A row
-- that does not exist yet cannot be locked: two batches that start the same pair at once
-- (ids committed out of order, both directions) both read "no row", and the second one's
-- ON CONFLICT update added its batch's unread count computed against read marker 0
-- instead of the marker the first one had just set (its own message moves it). The
-- count came out one or more too high until the next read (seen by
-- tests/history/read_state.test.mjs under load: unread 2 where one message was unread).
--
-- Now a writer whose batch begins conversations (a state row of the pair is missing)
-- first takes transaction-scoped advisory locks for them, in key order: one of 64 per
-- conversation key, so a batch never takes more than 64 such locks whatever its size (a
-- lock per pair ran PostgreSQL out of lock table with two concurrent 5,000-pair batches).
-- The row locks and the count follow in new statements, which see every row and marker
-- the previous holders committed. Conversations that already have their rows cost
-- nothing more; imgw_read and imgw_mark_read never create rows and keep locking the row
-- only. The arithmetic is 004's.

CREATE OR REPLACE FUNCTION imgw_messages_after_insert() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  -- Conversations this batch begins cannot be row-locked yet: advisory locks in their
  -- place, at most 64 (see above). 1768777591 is 'imgw' in ASCII, a namespace of our own.
  PERFORM pg_advisory_xact_lock(1768777591, b.k)
  FROM (SELECT DISTINCT hashtext(n.conv) & 63 AS k
        FROM new_rows n
        WHERE NOT EXISTS (SELECT 1 FROM conversation_state cs
                          WHERE cs.user_jid = n.sender AND cs.peer_jid = n.recipient)
           OR NOT EXISTS (SELECT 1 FROM conversation_state cs
                          WHERE cs.user_jid = n.recipient AND cs.peer_jid = n.sender)) b
  ORDER BY b.k;

  -- Lock the existing rows first, in key order (see 003): against imgw_read and
  -- imgw_mark_read, which take the row lock only.
  PERFORM 1 FROM conversation_state cs
  WHERE (cs.user_jid, cs.peer_jid) IN (SELECT sender, recipient FROM new_rows
                                       UNION SELECT recipient, sender FROM new_rows)
  ORDER BY cs.user_jid, cs.peer_jid
  FOR UPDATE;

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
