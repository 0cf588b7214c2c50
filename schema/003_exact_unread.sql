-- imgw schema, migration 003: exact unread counts under concurrent writers.
--
-- The unread arithmetic subtracts the peer's messages between the old and the
-- new read marker, counted in the messages table. In READ COMMITTED a
-- statement that waits for a row lock still counts with the snapshot it took
-- before waiting, so a message committed meanwhile by the lock holder (with
-- ids committed out of order, e.g. two gateway instances) could be missed
-- and unread stay one too high. Both places that move a read marker now lock
-- the conversation_state rows in one statement and count in the next, whose
-- snapshot sees everything the previous lock holders committed.

CREATE OR REPLACE FUNCTION imgw_messages_after_insert() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  -- Lock the existing rows first, in key order. The upsert below is a new
  -- statement with a new snapshot, so it sees every message committed by a
  -- writer that held one of these rows before us.
  PERFORM 1 FROM conversation_state cs
  WHERE (cs.user_jid, cs.peer_jid) IN (SELECT sender, recipient FROM new_rows
                                       UNION SELECT recipient, sender FROM new_rows)
  ORDER BY cs.user_jid, cs.peer_jid
  FOR UPDATE;

  INSERT INTO conversation_state AS cs
    (user_jid, peer_jid, conv, last_message_id, last_message_at, last_sender,
     last_kind, last_preview, last_read_id, unread, updated_at)
  SELECT s.user_jid, s.peer_jid, s.conv, l.id, l.created_at, l.sender, l.kind,
         left(l.body, 200), COALESCE(s.max_own, 0),
         (SELECT count(*) FROM new_rows n
           WHERE n.conv = s.conv AND n.sender = s.peer_jid AND n.id > COALESCE(s.max_own, 0)),
         now()
  FROM (
    SELECT x.user_jid, x.peer_jid, x.conv, max(x.id) AS max_id,
           max(x.id) FILTER (WHERE x.own) AS max_own
    FROM (SELECT sender AS user_jid, recipient AS peer_jid, conv, id, true AS own FROM new_rows
          UNION ALL
          SELECT recipient, sender, conv, id, false FROM new_rows) x
    GROUP BY x.user_jid, x.peer_jid, x.conv
  ) s
  JOIN new_rows l ON l.id = s.max_id
  ORDER BY s.user_jid, s.peer_jid
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
        cs.unread
        + (SELECT count(*) FROM new_rows n
            WHERE n.conv = cs.conv AND n.sender = cs.peer_jid AND n.id > cs.last_read_id)
        - CASE WHEN EXCLUDED.last_read_id > cs.last_read_id THEN
            (SELECT count(*) FROM messages m
              WHERE m.conv = cs.conv AND m.sender = cs.peer_jid
                AND m.id > cs.last_read_id AND m.id <= EXCLUDED.last_read_id)
          ELSE 0 END)
      END,
    updated_at = now();
  RETURN NULL;
END $$;

-- Mark read: the reader p_user has seen everything up to p_upto in the
-- conversation with p_peer. Returns the new marker and unread count, or no
-- row when nothing changed (marker already there, or no such conversation).
CREATE FUNCTION imgw_mark_read(p_user text, p_peer text, p_upto bigint)
RETURNS TABLE (last_read_id bigint, unread integer)
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM 1 FROM conversation_state cs
  WHERE cs.user_jid = p_user AND cs.peer_jid = p_peer
  FOR UPDATE;

  RETURN QUERY
  UPDATE conversation_state cs
  SET last_read_id = LEAST(p_upto, cs.last_message_id),
      unread = CASE WHEN p_upto >= cs.last_message_id THEN 0
                    ELSE GREATEST(0, cs.unread - (
                           SELECT count(*) FROM messages m
                           WHERE m.conv = cs.conv AND m.sender = cs.peer_jid
                             AND m.id > cs.last_read_id AND m.id <= p_upto)) END,
      updated_at = now()
  WHERE cs.user_jid = p_user AND cs.peer_jid = p_peer
    AND cs.last_read_id < LEAST(p_upto, cs.last_message_id)
  RETURNING cs.last_read_id, cs.unread;
END $$;

COMMENT ON FUNCTION imgw_mark_read(text, text, bigint) IS
  'Move p_user''s read marker in the conversation with p_peer to p_upto; returns (last_read_id, unread) or no row.';
