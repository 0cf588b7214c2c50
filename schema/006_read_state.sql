-- imgw schema, migration 006: a read that always says where the marker is, and the
-- chat list with what the gateway's cache needs to keep unread counts exact.
--
-- imgw_read replaces imgw_mark_read for the gateway (imgw_mark_read stays, unchanged,
-- for other callers):
--   * the marker only moves forward, and only onto a message of the conversation: the
--     newest one with an id at or below the id asked for ("read up to this point"). An id
--     of another conversation, or one that names no message, is clamped that way; an id
--     below every message of the conversation moves nothing;
--   * it always answers the marker and unread count as they are afterwards, with
--     moved = false when nothing changed (the caller then tells only the asking tab),
--     and no row only when the conversation does not exist.
--
-- imgw_chat_list answers the chat list with each entry's read marker and, when the user's
-- unread messages number at most p_ids_max altogether, the ids of each entry's unread
-- messages (one space between them, oldest first; '' when nothing is unread; NULL on
-- every entry past p_ids_max, so one call never lists more ids than that). The cache stores
-- the ids rather than a count, so that applying a message or a read twice, or in another
-- order than PostgreSQL committed them, cannot change the count (docs/redis.md).

CREATE FUNCTION imgw_read(p_user text, p_peer text, p_upto bigint)
RETURNS TABLE (last_read_id bigint, unread integer, moved boolean)
LANGUAGE plpgsql AS $$
DECLARE
  v_target bigint;
BEGIN
  -- Lock first, then look and count in new statements, whose snapshots see everything
  -- the previous lock holders (the insert trigger, other reads) committed (see 003).
  PERFORM 1 FROM conversation_state cs
  WHERE cs.user_jid = p_user AND cs.peer_jid = p_peer
  FOR UPDATE;

  SELECT m.id INTO v_target FROM messages m
  WHERE m.conv = imgw_conv_key(p_user, p_peer) AND m.id <= p_upto
  ORDER BY m.id DESC
  LIMIT 1;

  IF v_target IS NOT NULL THEN
    RETURN QUERY
    UPDATE conversation_state cs
    SET last_read_id = v_target,
        unread = CASE WHEN v_target >= cs.last_message_id THEN 0
                      ELSE GREATEST(0, cs.unread - (
                             SELECT count(*) FROM messages m
                             WHERE m.conv = cs.conv AND m.sender = cs.peer_jid
                               AND m.id > cs.last_read_id AND m.id <= v_target)) END,
        updated_at = now()
    WHERE cs.user_jid = p_user AND cs.peer_jid = p_peer AND cs.last_read_id < v_target
    RETURNING cs.last_read_id, cs.unread, true;
    IF FOUND THEN
      RETURN;
    END IF;
  END IF;

  RETURN QUERY
  SELECT cs.last_read_id, cs.unread, false
  FROM conversation_state cs
  WHERE cs.user_jid = p_user AND cs.peer_jid = p_peer;
END $$;

COMMENT ON FUNCTION imgw_read(text, text, bigint) IS
  'Move p_user''s read marker with p_peer forward to the newest message at or below p_upto; returns (last_read_id, unread, moved), no row without a conversation.';

CREATE FUNCTION imgw_chat_list(p_user text, p_limit int, p_ids_max int)
RETURNS TABLE (peer_jid text, last_message_id bigint, last_ms bigint, last_sender text,
               last_kind text, last_preview text, unread integer, last_read_id bigint,
               unread_ids text)
LANGUAGE sql STABLE AS $$
  -- One statement, one snapshot: the ids agree with the counts. The window sum runs over
  -- all of the user's conversations, before the LIMIT.
  SELECT cs.peer_jid, cs.last_message_id,
         (extract(epoch FROM cs.last_message_at) * 1000)::bigint,
         cs.last_sender, cs.last_kind, cs.last_preview, cs.unread, cs.last_read_id,
         CASE WHEN cs.unread = 0 THEN ''
              WHEN cs.total <= p_ids_max THEN
                (SELECT string_agg(m.id::text, ' ' ORDER BY m.id) FROM messages m
                  WHERE m.conv = cs.conv AND m.sender = cs.peer_jid AND m.id > cs.last_read_id)
         END
  FROM (SELECT c.*, sum(c.unread) OVER () AS total
        FROM conversation_state c
        WHERE c.user_jid = p_user
        ORDER BY c.last_message_id DESC
        LIMIT p_limit) cs
  ORDER BY cs.last_message_id DESC
$$;

COMMENT ON FUNCTION imgw_chat_list(text, int, int) IS
  'Chat list of p_user, newest first: entry, unread, read marker and (up to p_ids_max in all) the unread ids.';
