-- imgw schema, migration 005: dead letters.
--
-- A message row that PostgreSQL refuses on its own (a data error: SQLSTATE
-- class 22 or 23, e.g. a unique violation on message_ids.id or a CHECK on a
-- JID) must not block the rows written with it. The gateway splits a failing
-- batch until the refused row is alone and keeps that row here, with the
-- reason, so nothing is lost and an operator can look at it. Rows here are not
-- part of the history: no trigger reads this table and no report uses it.
--
-- Values are kept as the gateway had them: the id and timestamp as numeric,
-- because the row may have failed precisely for not fitting bigint. When even
-- the text fields could not be stored (invalid encoding), the gateway stores
-- them escaped to printable ASCII (\xNN for any other byte) and sets escaped.

CREATE TABLE dead_letters (
  seq        bigserial   PRIMARY KEY,
  message_id numeric(20, 0) NOT NULL,
  ts_ms      numeric(20, 0) NOT NULL,
  sender     text        NOT NULL,
  recipient  text        NOT NULL,
  body       text        NOT NULL,
  kind       text        NOT NULL,
  client_id  text,
  stanza_id  text        NOT NULL,
  source     text        NOT NULL CHECK (source IN ('live', 'spool')),
  sqlstate   text        NOT NULL,
  error      text        NOT NULL,
  escaped    boolean     NOT NULL DEFAULT false,
  failed_at  timestamptz NOT NULL DEFAULT now()
);

COMMENT ON TABLE dead_letters IS
  'Messages PostgreSQL refused (data errors), isolated from their batch; not part of the history.';
COMMENT ON COLUMN dead_letters.source IS
  'live: from a gateway''s queue; spool: replayed from a gateway''s spool file.';
COMMENT ON COLUMN dead_letters.sqlstate IS 'SQLSTATE of the refusal, e.g. 23505.';
COMMENT ON COLUMN dead_letters.escaped IS
  'true when the text fields are stored escaped (\xNN) because they could not be stored as they were.';

CREATE INDEX dead_letters_failed_at_idx ON dead_letters (failed_at);
