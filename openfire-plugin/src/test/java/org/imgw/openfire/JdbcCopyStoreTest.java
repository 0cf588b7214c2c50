package org.imgw.openfire;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertTrue;

import java.io.BufferedReader;
import java.io.File;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.atomic.AtomicInteger;
import org.imgw.openfire.Fixtures.FakeSettings;
import org.imgw.openfire.Fixtures.ListSink;
import org.junit.After;
import org.junit.Assume;
import org.junit.Before;
import org.junit.Test;

/**
 * The copy table on a real HSQLDB (Openfire's embedded database), created by the plugin's
 * install script executed the way Openfire's SchemaManager does. Skipped when the source
 * directory or the HSQLDB driver is not available (e.g. under Maven).
 */
public class JdbcCopyStoreTest {
    private static final AtomicInteger DATABASES = new AtomicInteger();
    private String url;
    private Connection keepAlive;
    private JdbcCopyStore store;

    @Before
    public void setUp() throws Exception {
        String source = System.getProperty("imgw.sourceDir");
        Assume.assumeTrue("imgw.sourceDir not set", source != null);
        try {
            Class.forName("org.hsqldb.jdbcDriver");
        } catch (ClassNotFoundException e) {
            Assume.assumeTrue("HSQLDB not on the class path", false);
        }
        url = "jdbc:hsqldb:mem:imgw" + DATABASES.incrementAndGet();
        keepAlive = DriverManager.getConnection(url, "SA", "");
        try (Statement s = keepAlive.createStatement()) {
            // Openfire's own schema has this table; the plugin's script adds its row.
            s.execute("CREATE TABLE ofVersion (name VARCHAR(50) NOT NULL, version INTEGER NOT NULL,"
                    + " CONSTRAINT ofVersion_pk PRIMARY KEY (name))");
        }
        runLikeOpenfire(keepAlive, new File(source, "database/imgwcompanion_hsqldb.sql"));
        store = new JdbcCopyStore(new JdbcCopyStore.ConnectionSource() {
            @Override
            public Connection get() throws SQLException {
                return DriverManager.getConnection(url, "SA", "");
            }
        });
    }

    @After
    public void tearDown() throws SQLException {
        if (keepAlive != null) {
            try (Statement s = keepAlive.createStatement()) {
                s.execute("SHUTDOWN");
            }
            keepAlive.close();
        }
    }

    /**
     * As SchemaManager.executeSQLScript: comment lines skipped, a statement ends with a line
     * ending in ';' (kept, as Openfire keeps it for HSQLDB), empty statements skipped.
     */
    private static void runLikeOpenfire(Connection c, File script) throws IOException, SQLException {
        try (BufferedReader in = Files.newBufferedReader(script.toPath(), StandardCharsets.UTF_8)) {
            StringBuilder command = new StringBuilder();
            for (String line; (line = in.readLine()) != null;) {
                String t = line.trim();
                boolean comment = t.isEmpty() || t.startsWith("//") || t.startsWith("--") || t.startsWith("#")
                        || t.startsWith("REM") || t.startsWith("/*") || t.startsWith("*");
                if (!comment) {
                    command.append(' ').append(line);
                }
                if (t.endsWith(";") && command.length() > 0) {
                    try (PreparedStatement ps = c.prepareStatement(command.toString())) {
                        ps.execute();
                    }
                    command.setLength(0);
                }
            }
        }
    }

    @Test
    public void theInstallScriptRegistersItsVersion() throws SQLException {
        try (PreparedStatement ps = keepAlive.prepareStatement("SELECT version FROM ofVersion WHERE name = ?")) {
            ps.setString(1, "imgwcompanion");
            try (ResultSet rs = ps.executeQuery()) {
                assertTrue(rs.next());
                assertEquals(1, rs.getInt(1));
            }
        }
        assertEquals(0, store.count());
        assertEquals(0, store.maxSeq());
    }

    @Test
    public void rowsGoInAndComeBackInOrder() throws SQLException {
        String odd = "<message><body>caf\u00e9 \ud83d\ude00 &lt;b&gt; \u4e2d</body></message>";
        store.insert(Arrays.asList(new CopyStore.Row(30, 3, "<c/>"), new CopyStore.Row(10, 1, odd),
                new CopyStore.Row(20, 2, "<b/>")));
        assertEquals(3, store.count());
        assertEquals(30, store.maxSeq());
        List<CopyStore.Row> rows = store.load(0, 10);
        assertEquals(Arrays.asList(10L, 20L, 30L), seqs(rows));
        assertEquals("UTF-8 survives", odd, rows.get(0).stanza);
        assertEquals(1, rows.get(0).created);
        assertEquals(Arrays.asList(20L), seqs(store.load(11, 1)));
        assertEquals(Arrays.asList(30L), seqs(store.load(30, 5)));
        assertEquals(0, store.load(31, 5).size());
    }

    @Test
    public void rangesAreDeleted() throws SQLException {
        List<CopyStore.Row> rows = new ArrayList<CopyStore.Row>();
        for (long s = 1; s <= 10; s++) {
            rows.add(new CopyStore.Row(s, s, "<m/>"));
        }
        store.insert(rows);
        assertEquals(4, store.delete(3, 6));
        assertEquals(0, store.delete(3, 6));
        assertEquals(1, store.delete(10, 10));
        assertEquals(Arrays.asList(1L, 2L, 7L, 8L, 9L), seqs(store.load(0, 100)));
    }

    @Test
    public void aFailedBatchStoresNothing() throws SQLException {
        store.insert(Arrays.asList(new CopyStore.Row(5, 1, "<a/>")));
        try {
            store.insert(Arrays.asList(new CopyStore.Row(6, 1, "<b/>"), new CopyStore.Row(5, 1, "<dup/>")));
            org.junit.Assert.fail("duplicate key accepted");
        } catch (SQLException expected) {
            // The whole batch is rolled back.
        }
        assertEquals(Arrays.asList(5L), seqs(store.load(0, 10)));
        // The connection went back as it came: later statements still commit on their own.
        store.insert(Arrays.asList(new CopyStore.Row(7, 1, "<c/>")));
        assertEquals(2, store.count());
    }

    @Test
    public void theLedgerSpillsToTheTableAndReadsBack() throws SQLException {
        FakeSettings settings = new FakeSettings();
        settings.acks = "true";
        settings.backlog = 100;
        ListSink sink = new ListSink();
        CopyLedger ledger = new CopyLedger(settings, store, sink, new CompanionStats());
        long t0 = 1764088800123L;
        ledger.start(t0, 0);
        List<Long> seqs = new ArrayList<Long>();
        for (int i = 0; i < 180; i++) {
            seqs.add(ledger.track(CopyEnvelope.build(Fixtures.message("<message from='bob@shop.example/p'"
                    + " to='alice@shop.example' id='m" + i + "' type='chat'><body>x" + i + "</body></message>"),
                    Fixtures.DOMAIN, Fixtures.GW, "copy-" + i, t0), t0));
        }
        ledger.tick(t0 + 1, false);
        assertEquals(80, store.count());
        // A restart: a new ledger on the same table numbers above what is stored and resends it.
        CopyLedger next = new CopyLedger(settings, store, sink, new CompanionStats());
        next.start(t0 - 1000, 0);
        next.tick(t0 + 2, true);
        assertEquals(75, sink.routed.size());
        assertTrue(next.lastSeq() >= seqs.get(79));
    }

    private static List<Long> seqs(List<CopyStore.Row> rows) {
        List<Long> out = new ArrayList<Long>();
        for (CopyStore.Row r : rows) {
            out.add(r.seq);
        }
        return out;
    }
}
