package org.imgw.openfire;

import java.nio.charset.StandardCharsets;
import java.sql.Connection;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.util.ArrayList;
import java.util.List;

/**
 * {@link CopyStore} over JDBC: the table {@code ofImgwCopy} that plugin.xml's databaseKey makes
 * Openfire create from {@code database/imgwcompanion_<dbtype>.sql}. The stanza is stored as
 * UTF-8 bytes, so the database's character set cannot mangle it. Every statement is
 * parameterised.
 */
public final class JdbcCopyStore implements CopyStore {
    /** Hands out pooled connections: Openfire's DbConnectionManager, or a test database. */
    public interface ConnectionSource {
        Connection get() throws SQLException;
    }

    static final String TABLE = "ofImgwCopy";

    private final ConnectionSource connections;

    public JdbcCopyStore(ConnectionSource connections) {
        this.connections = connections;
    }

    @Override
    public long maxSeq() throws SQLException {
        try (Connection c = connections.get();
                PreparedStatement ps = c.prepareStatement("SELECT MAX(seq) FROM " + TABLE);
                ResultSet rs = ps.executeQuery()) {
            return rs.next() ? rs.getLong(1) : 0;
        }
    }

    @Override
    public long count() throws SQLException {
        try (Connection c = connections.get();
                PreparedStatement ps = c.prepareStatement("SELECT COUNT(*) FROM " + TABLE);
                ResultSet rs = ps.executeQuery()) {
            return rs.next() ? rs.getLong(1) : 0;
        }
    }

    @Override
    public void insert(List<Row> rows) throws SQLException {
        if (rows.isEmpty()) {
            return;
        }
        try (Connection c = connections.get()) {
            boolean auto = c.getAutoCommit();
            c.setAutoCommit(false);
            try (PreparedStatement ps = c.prepareStatement(
                    "INSERT INTO " + TABLE + " (seq, created, stanza) VALUES (?, ?, ?)")) {
                for (Row r : rows) {
                    ps.setLong(1, r.seq);
                    ps.setLong(2, r.created);
                    ps.setBytes(3, r.stanza.getBytes(StandardCharsets.UTF_8));
                    ps.addBatch();
                }
                ps.executeBatch();
                c.commit();
            } catch (SQLException e) {
                rollback(c);
                throw e;
            } finally {
                // The connection goes back to Openfire's pool: leave it as it came.
                c.setAutoCommit(auto);
            }
        }
    }

    @Override
    public List<Row> load(long fromSeq, int max) throws SQLException {
        List<Row> out = new ArrayList<Row>();
        if (max <= 0) {
            return out;
        }
        try (Connection c = connections.get();
                PreparedStatement ps = c.prepareStatement(
                        "SELECT seq, created, stanza FROM " + TABLE + " WHERE seq >= ? ORDER BY seq")) {
            ps.setMaxRows(max);
            ps.setLong(1, fromSeq);
            try (ResultSet rs = ps.executeQuery()) {
                while (rs.next() && out.size() < max) {
                    byte[] b = rs.getBytes(3);
                    out.add(new Row(rs.getLong(1), rs.getLong(2), b == null ? "" : new String(b, StandardCharsets.UTF_8)));
                }
            }
        }
        return out;
    }

    @Override
    public int delete(long first, long last) throws SQLException {
        try (Connection c = connections.get();
                PreparedStatement ps = c.prepareStatement("DELETE FROM " + TABLE + " WHERE seq >= ? AND seq <= ?")) {
            ps.setLong(1, first);
            ps.setLong(2, last);
            return ps.executeUpdate();
        }
    }

    private static void rollback(Connection c) {
        try {
            c.rollback();
        } catch (SQLException ignored) {
            // The original error is the one worth reporting.
        }
    }
}
