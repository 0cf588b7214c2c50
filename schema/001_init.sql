-- imgw schema, migration 001: message history, de-duplication, per-user
-- conversation state, users, monthly partitions.
--
-- Runs inside a transaction opened by the migrator (schema/migrate.sh or
-- `imgw migrate`); it must not contain BEGIN/COMMIT itself. See
-- schema/README.md for the meaning of every table and column.

-- Conversation key: the two bare JIDs in byte order, joined by one space.
-- Bare JIDs never contain a space, so the key is unambiguous and splits back
-- with split_part(conv, ' ', 1|2). COLLATE "C" makes the order independent of
-- the database's locale.
CREATE FUNCTION imgw_conv_key(a text, b text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
RETURN CASE WHEN a COLLATE "C" <= b COLLATE "C" THEN a || ' ' || b ELSE b || ' ' || a END;

COMMENT ON FUNCTION imgw_conv_key(text, text) IS
  'Conversation key of two bare JIDs: both in byte order, joined by a space.';

CREATE SEQUENCE message_id_seq AS bigint;

CREATE TABLE users (
  jid          text PRIMARY KEY,
  type         text NOT NULL CHECK (type IN ('buyer', 'seller')),
  display_name text,
  created_at   timestamptz NOT NULL DEFAULT now(),
  updated_at   timestamptz NOT NULL DEFAULT now()
);

COMMENT ON TABLE users IS
  'Known chat users. type decides who is the seller in reports.';

-- Every message exactly once. Partitioned by month on created_at so that old
-- months can be dropped and reports over a period read only their months.
CREATE TABLE messages (
  id         bigint      NOT NULL DEFAULT nextval('message_id_seq'),
  conv       text        NOT NULL,
  sender     text        NOT NULL,
  recipient  text        NOT NULL,
  body       text        NOT NULL,
  kind       text        NOT NULL DEFAULT 'text' CHECK (kind IN ('text', 'image')),
  client_id  text,
  stanza_id  text        NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  CHECK (sender <> '' AND recipient <> '' AND sender !~ '[/[:space:]]' AND recipient !~ '[/[:space:]]')
) PARTITION BY RANGE (created_at);

ALTER SEQUENCE message_id_seq OWNED BY messages.id;

COMMENT ON TABLE messages IS
  'Chat history, one row per message, append-only. Monthly partitions messages_pYYYY_MM (UTC).';
COMMENT ON COLUMN messages.id IS 'Message id: orders the conversation; unique (see message_ids).';
COMMENT ON COLUMN messages.conv IS 'imgw_conv_key(sender, recipient); set by a trigger.';
COMMENT ON COLUMN messages.stanza_id IS 'De-duplication key, unique over all partitions through message_ids.';

CREATE TABLE messages_default PARTITION OF messages DEFAULT;

-- Paging a conversation, newest first.
CREATE INDEX messages_conv_id_idx ON messages (conv, id DESC);
-- Reports per user over a period.
CREATE INDEX messages_sender_created_idx ON messages (sender, created_at);
CREATE INDEX messages_recipient_created_idx ON messages (recipient, created_at);

-- A unique index on a partitioned table must contain the partition key, so
-- stanza_id cannot be unique on messages itself. This small unpartitioned
-- table holds the global uniqueness of stanza_id and of id instead. A row
-- trigger on messages claims the stanza_id here first and skips the message
-- when it was already claimed, so every writer gets de-duplication, and
-- `INSERT ... RETURNING` returns only the rows actually stored.
CREATE TABLE message_ids (
  stanza_id  text        PRIMARY KEY,
  id         bigint      NOT NULL UNIQUE,
  created_at timestamptz NOT NULL
);

COMMENT ON TABLE message_ids IS
  'Global uniqueness of messages.stanza_id and messages.id; one row per stored message.';

-- Per user and peer: the chat list entry. Maintained by a statement trigger
-- on messages and by mark-read (see README).
CREATE TABLE conversation_state (
  user_jid        text        NOT NULL,
  peer_jid        text        NOT NULL,
  conv            text        NOT NULL,
  last_message_id bigint      NOT NULL,
  last_message_at timestamptz NOT NULL,
  last_sender     text        NOT NULL,
  last_kind       text        NOT NULL,
  last_preview    text        NOT NULL,
  last_read_id    bigint      NOT NULL DEFAULT 0,
  unread          integer     NOT NULL DEFAULT 0 CHECK (unread >= 0),
  updated_at      timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (user_jid, peer_jid)
);

COMMENT ON TABLE conversation_state IS
  'One row per user per conversation: last message, read marker, unread count.';
COMMENT ON COLUMN conversation_state.unread IS
  'Messages from peer_jid with id > last_read_id.';

-- Chat list: a user's conversations, most recent first.
CREATE INDEX conversation_state_list_idx ON conversation_state (user_jid, last_message_id DESC);

-- Row trigger: derive conv, then claim stanza_id and id. Returning NULL skips
-- the row: a duplicate stanza_id is a silent no-op, like ON CONFLICT DO NOTHING.
-- A clash on id alone (two different messages with one id) is an error.
CREATE FUNCTION imgw_messages_before_insert() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  NEW.conv := imgw_conv_key(NEW.sender, NEW.recipient);
  INSERT INTO message_ids (stanza_id, id, created_at)
  VALUES (NEW.stanza_id, NEW.id, NEW.created_at)
  ON CONFLICT (stanza_id) DO NOTHING;
  IF NOT FOUND THEN
    RETURN NULL;
  END IF;
  RETURN NEW;
END $$;

CREATE TRIGGER messages_before_insert
  BEFORE INSERT ON messages
  FOR EACH ROW EXECUTE FUNCTION imgw_messages_before_insert();

-- Statement trigger: fold the inserted rows into conversation_state, once per
-- (user, peer) per statement. Sending a message moves the sender's read
-- marker to it (you have seen what you answer). Rows are locked in
-- (user_jid, peer_jid) order so concurrent batches cannot deadlock here.
--
-- unread after the statement, for one (user, peer) row:
--   old unread
--   + messages from peer in this batch with id > old read marker
--   - messages from peer (in the table) with old marker < id <= new marker
-- and 0 when the new marker reaches the last message.
CREATE FUNCTION imgw_messages_after_insert() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
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

CREATE TRIGGER messages_after_insert
  AFTER INSERT ON messages
  REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION imgw_messages_after_insert();

-- Create the monthly partitions (UTC months) from months_back months before
-- the current month to months_ahead months after it. Idempotent. Rows that
-- already landed in messages_default for a new month are moved into the new
-- partition. Returns the number of partitions created.
CREATE FUNCTION imgw_ensure_partitions(months_ahead int DEFAULT 3, months_back int DEFAULT 0)
RETURNS int LANGUAGE plpgsql AS $$
DECLARE
  this_month timestamp := date_trunc('month', now() AT TIME ZONE 'UTC');
  lo timestamptz;
  hi timestamptz;
  name text;
  created int := 0;
  moved bigint;
BEGIN
  IF months_ahead < 0 OR months_back < 0 THEN
    RAISE EXCEPTION 'imgw_ensure_partitions: months must be >= 0';
  END IF;
  -- Two callers at once (gateway instances at start-up) take turns.
  PERFORM pg_advisory_xact_lock(hashtext('imgw.partitions'));
  FOR i IN -months_back .. months_ahead LOOP
    lo := (this_month + make_interval(months => i)) AT TIME ZONE 'UTC';
    hi := (this_month + make_interval(months => i + 1)) AT TIME ZONE 'UTC';
    name := 'messages_p' || to_char(this_month + make_interval(months => i), 'YYYY_MM');
    CONTINUE WHEN to_regclass(quote_ident(name)) IS NOT NULL;
    IF EXISTS (SELECT 1 FROM messages_default WHERE created_at >= lo AND created_at < hi) THEN
      -- Attaching a partition whose range has rows in the default partition
      -- fails; move those rows first. The lock keeps writers out meanwhile.
      LOCK TABLE messages IN SHARE ROW EXCLUSIVE MODE;
      EXECUTE format('CREATE TABLE %I (LIKE messages INCLUDING DEFAULTS INCLUDING CONSTRAINTS)', name);
      EXECUTE format('WITH moved AS (DELETE FROM messages_default WHERE created_at >= $1 AND created_at < $2 RETURNING *) '
                     'INSERT INTO %I SELECT * FROM moved', name) USING lo, hi;
      GET DIAGNOSTICS moved = ROW_COUNT;
      EXECUTE format('ALTER TABLE messages ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)', name, lo, hi);
      RAISE NOTICE 'imgw_ensure_partitions: moved % rows from messages_default to %', moved, name;
    ELSE
      EXECUTE format('CREATE TABLE %I PARTITION OF messages FOR VALUES FROM (%L) TO (%L)', name, lo, hi);
    END IF;
    created := created + 1;
  END LOOP;
  RETURN created;
END $$;

COMMENT ON FUNCTION imgw_ensure_partitions(int, int) IS
  'Create monthly partitions of messages (UTC) for [now - months_back, now + months_ahead]; run daily.';

SELECT imgw_ensure_partitions(3, 0);
