-- imgw companion: unacknowledged message copies past the memory backlog
-- (docs/companion-protocol.md section 9). Installed by Openfire from plugin.xml's
-- <databaseKey>imgwcompanion</databaseKey> <databaseVersion>1</databaseVersion>.
-- seq: the copy's sequence number, created: when it was made (ms since 1970),
-- stanza: the copy envelope as UTF-8 XML bytes (binary, so no character set can mangle it).

CREATE TABLE ofImgwCopy (
  seq      BIGINT NOT NULL,
  created  BIGINT NOT NULL,
  stanza   MEDIUMBLOB NOT NULL,
  CONSTRAINT ofImgwCopy_pk PRIMARY KEY (seq)
);

INSERT INTO ofVersion (name, version) VALUES ('imgwcompanion', 1);
