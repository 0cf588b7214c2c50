package org.imgw.openfire;

import static org.junit.Assert.assertTrue;

import java.io.PrintWriter;
import java.io.StringWriter;
import java.util.Arrays;
import java.util.HashSet;
import org.imgw.openfire.Fixtures.FakeSettings;
import org.imgw.openfire.Fixtures.ListSink;
import org.imgw.openfire.Fixtures.RecordingPresence;
import org.junit.Test;

public class AdminPageTest {
    @Test
    public void showsInstancesWebUsersAndCopies() throws CompanionError {
        FakeSettings settings = new FakeSettings();
        settings.acks = "true";
        CompanionStats stats = new CompanionStats();
        WebUsers web = new WebUsers(new RecordingPresence(), stats);
        web.gateway(7, "00000000000000ab", 30, 0, 0, "12", 1000);
        web.web(7, "00000000000000ab", false, Arrays.asList(new WebUsers.Change("alice", true),
                new WebUsers.Change("bob", true)), new HashSet<String>(Arrays.asList("alice", "bob")), 1000);
        CopyLedger ledger = new CopyLedger(settings, null, new ListSink(), stats);
        ledger.start(1000, 0);
        ledger.track(CopyEnvelope.build(Fixtures.message("<message from='a@shop.example/x' to='alice@shop.example'>"
                + "<body>x</body></message>"), Fixtures.DOMAIN, Fixtures.GW, "c1", 1000), 1000);
        StringWriter out = new StringWriter();
        AdminServlet.renderVersion1(new PrintWriter(out), web, ledger, stats, settings, 11000);
        String html = out.toString();
        assertTrue(html, html.contains("<td>7</td><td><code>00000000000000ab</code></td><td>20 s</td><td>2</td>"));
        assertTrue(html, html.contains("Web-online users (any instance, or a version-0 announcement)</td><td>2</td>"));
        assertTrue(html, html.contains("Unacknowledged copies in memory / in the database</td><td>1 / 0</td>"));
        assertTrue(html, html.contains("Acknowledgements</td><td>on (plugin.imgw.acks = true)"));
    }

    @Test
    public void withoutInstancesSaysSo() {
        FakeSettings settings = new FakeSettings();
        CompanionStats stats = new CompanionStats();
        StringWriter out = new StringWriter();
        AdminServlet.renderVersion1(new PrintWriter(out), new WebUsers(new RecordingPresence(), stats),
                new CopyLedger(settings, null, new ListSink(), stats), stats, settings, 0);
        assertTrue(out.toString().contains("No version-1 gateway instance is registered."));
        assertTrue(out.toString().contains("Acknowledgements</td><td>off (plugin.imgw.acks = auto)"));
    }
}
