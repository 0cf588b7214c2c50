-- imgw schema, migration 002: report functions and views for analysts.
--
-- Each report is a set-returning SQL function over a period [p_from, p_to)
-- of created_at, plus a view over all history. The functions are plain
-- single-SELECT SQL functions, so the planner inlines them: a period given as
-- constants reads only the partitions of that period. Days are calendar days
-- in the session's TimeZone (SET TimeZone = 'Europe/Berlin' before querying
-- for Berlin days; the migrator and the tests use UTC).
--
-- Who is the seller: users.type. A message counts as buyer -> seller when
-- its sender has type 'buyer' and its recipient type 'seller'. Users missing
-- from users are left out of first-response and unanswered reports.

-- Messages sent and received per user per day.
CREATE FUNCTION report_daily_volume_between(p_from timestamptz, p_to timestamptz)
RETURNS TABLE (day date, user_jid text, user_type text, sent bigint, received bigint)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
  SELECT v.day, v.user_jid, u.type, v.sent, v.received
  FROM (
    SELECT m.created_at::date AS day, x.user_jid,
           count(*) FILTER (WHERE x.sent) AS sent,
           count(*) FILTER (WHERE NOT x.sent) AS received
    FROM messages m
    CROSS JOIN LATERAL (VALUES (m.sender, true), (m.recipient, false)) AS x (user_jid, sent)
    WHERE m.created_at >= p_from AND m.created_at < p_to
    GROUP BY 1, 2
  ) v
  LEFT JOIN users u ON u.jid = v.user_jid
$$;

CREATE VIEW report_daily_volume AS
  SELECT * FROM report_daily_volume_between('-infinity', 'infinity');

COMMENT ON VIEW report_daily_volume IS
  'Per day (session TimeZone) and user: messages sent and received. For a period use report_daily_volume_between(from, to).';

-- Per buyer<->seller conversation and day: the buyer's first message that day
-- and the seller's first message after it (by id, on any later day), with
-- the interval between them. reply_* are NULL while the seller has not
-- answered. p_reply_window bounds how far after p_to replies are looked for.
-- p_seller, when given, limits the report to that seller's conversations
-- and reads only them (indexes on sender and recipient).
--
-- How: one pass over the period's messages numbers the seller's messages in
-- each conversation (seller_no, a running count in id order). The first
-- seller message after a buyer message with running count k is the seller
-- message numbered k + 1, found with one hash join instead of one index
-- probe per buyer message and partition.
CREATE FUNCTION report_first_response_between(p_from timestamptz, p_to timestamptz,
                                              p_reply_window interval DEFAULT '30 days',
                                              p_seller text DEFAULT NULL)
RETURNS TABLE (conv text, day date, buyer_jid text, seller_jid text,
               buyer_message_id bigint, buyer_message_at timestamptz,
               reply_id bigint, reply_at timestamptz,
               response_interval interval, response_seconds double precision)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
  WITH numbered AS MATERIALIZED (
    SELECT m.conv, m.id, m.created_at, m.sender, m.recipient,
           su.type = 'seller' AS from_seller,
           count(*) FILTER (WHERE su.type = 'seller')
             OVER (PARTITION BY m.conv ORDER BY m.id) AS seller_no
    FROM messages m
    JOIN users su ON su.jid = m.sender
    JOIN users ru ON ru.jid = m.recipient
    WHERE m.created_at >= p_from AND m.created_at < p_to + p_reply_window
      AND su.type <> ru.type
      AND (p_seller IS NULL OR m.sender = p_seller OR m.recipient = p_seller)
  ), first_of_day AS (
    SELECT DISTINCT ON (n.conv, n.created_at::date)
           n.conv, n.created_at::date AS day, n.sender, n.recipient, n.id, n.created_at, n.seller_no
    FROM numbered n
    WHERE NOT n.from_seller AND n.created_at < p_to
    ORDER BY n.conv, n.created_at::date, n.id
  )
  SELECT b.conv, b.day, b.sender, b.recipient, b.id, b.created_at,
         r.id, r.created_at, r.created_at - b.created_at,
         extract(epoch FROM r.created_at - b.created_at)::double precision
  FROM first_of_day b
  LEFT JOIN numbered r
    ON r.from_seller AND r.conv = b.conv AND r.seller_no = b.seller_no + 1
$$;

CREATE VIEW report_first_response AS
  SELECT * FROM report_first_response_between('-infinity', 'infinity');

COMMENT ON VIEW report_first_response IS
  'Per buyer-seller conversation and day: first buyer message, the seller''s first reply after it, response interval.';

-- Conversations whose last message is from the buyer to the seller, with
-- how long the buyer has been waiting. Filter on waiting for "over N":
--   SELECT * FROM report_unanswered WHERE waiting > interval '2 hours';
-- Read from conversation_state (the seller's row), so it costs a few
-- milliseconds whatever the size of the history.
CREATE VIEW report_unanswered AS
  SELECT cs.conv, cs.peer_jid AS buyer_jid, cs.user_jid AS seller_jid,
         cs.last_message_id, cs.last_message_at,
         now() - cs.last_message_at AS waiting
  FROM conversation_state cs
  JOIN users s ON s.jid = cs.user_jid AND s.type = 'seller'
  JOIN users b ON b.jid = cs.peer_jid AND b.type = 'buyer'
  WHERE cs.last_sender = cs.peer_jid;

COMMENT ON VIEW report_unanswered IS
  'Buyer-seller conversations whose last message is the buyer''s, with the time waited so far.';

CREATE FUNCTION report_unanswered(older_than interval)
RETURNS SETOF report_unanswered
LANGUAGE sql STABLE AS $$
  SELECT * FROM report_unanswered WHERE last_message_at < now() - older_than
$$;

COMMENT ON FUNCTION report_unanswered(interval) IS
  'report_unanswered rows where the buyer has waited longer than older_than.';
