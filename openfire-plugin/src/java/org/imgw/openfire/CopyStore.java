package org.imgw.openfire;

import java.sql.SQLException;
import java.util.List;

/**
 * Where unacknowledged copies past the memory backlog are kept (section 9): the plugin's table
 * {@code ofImgwCopy} through Openfire's connection pool in production ({@link JdbcCopyStore}).
 * Only the ledger's maintenance thread calls it, never the routing threads.
 */
public interface CopyStore {
    /** One stored copy. */
    final class Row {
        public final long seq;
        public final long created;
        /** The copy envelope as XML text. */
        public final String stanza;

        public Row(long seq, long created, String stanza) {
            this.seq = seq;
            this.created = created;
            this.stanza = stanza;
        }
    }

    /** The highest stored sequence number, 0 when the table is empty. */
    long maxSeq() throws SQLException;

    /** Number of stored copies. */
    long count() throws SQLException;

    /** Stores the rows, all or none. */
    void insert(List<Row> rows) throws SQLException;

    /**
     * Reads stored copies in sequence order.
     *
     * @param fromSeq the lowest sequence number wanted
     * @param max most rows returned
     */
    List<Row> load(long fromSeq, int max) throws SQLException;

    /**
     * Deletes the copies numbered first..last (inclusive).
     *
     * @return how many rows went
     */
    int delete(long first, long last) throws SQLException;
}
