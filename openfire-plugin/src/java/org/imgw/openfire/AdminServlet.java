package org.imgw.openfire;

import java.io.IOException;
import java.io.PrintWriter;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.SecureRandom;
import java.util.Locale;
import java.util.regex.Pattern;
import javax.servlet.http.HttpServlet;
import javax.servlet.http.HttpServletRequest;
import javax.servlet.http.HttpServletResponse;
import javax.servlet.http.HttpSession;
import org.jivesoftware.util.JiveGlobals;

/**
 * The admin console page (Server → Server Settings → imgw companion): whether the gateway
 * component is connected, the live gateway instances and web users, the acknowledged copies, the
 * counters, and the settings. Behind the admin login; form posts
 * carry a per-session CSRF token. Rendered as plain HTML, which the console decorates.
 */
public final class AdminServlet extends HttpServlet {
    private static final long serialVersionUID = 1L;
    private static final String CSRF = "imgw.companion.csrf";
    private static final Pattern DOMAIN = Pattern.compile("[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?");
    static final int MIN_SECRET = 16;

    private final SecureRandom random = new SecureRandom();

    @Override
    protected void doGet(HttpServletRequest request, HttpServletResponse response) throws IOException {
        render(request, response, request.getParameter("saved") != null ? "Settings saved." : null, null);
    }

    @Override
    protected void doPost(HttpServletRequest request, HttpServletResponse response) throws IOException {
        HttpSession session = request.getSession();
        Object expected = session.getAttribute(CSRF);
        String given = request.getParameter("csrf");
        if (!(expected instanceof String) || given == null || !MessageDigest.isEqual(
                ((String) expected).getBytes(StandardCharsets.UTF_8), given.getBytes(StandardCharsets.UTF_8))) {
            render(request, response, null, "The form expired; please try again.");
            return;
        }
        String gateway = trim(request.getParameter("gateway")).toLowerCase(Locale.ROOT);
        String secret = trim(request.getParameter("secret"));
        if (!gateway.isEmpty() && !DOMAIN.matcher(gateway).matches()) {
            render(request, response, null, "The gateway domain is not a valid domain name.");
            return;
        }
        if (!secret.isEmpty() && secret.length() < MIN_SECRET) {
            render(request, response, null, "The secret must have at least " + MIN_SECRET + " characters.");
            return;
        }
        if (gateway.isEmpty()) {
            JiveGlobals.deleteProperty(Companion.PROP_GATEWAY_DOMAIN);
        } else {
            JiveGlobals.setProperty(Companion.PROP_GATEWAY_DOMAIN, gateway);
        }
        if ("on".equals(request.getParameter("clearSecret"))) {
            JiveGlobals.deleteProperty(Companion.PROP_SECRET);
        } else if (!secret.isEmpty()) {
            JiveGlobals.setProperty(Companion.PROP_SECRET, secret);
        }
        JiveGlobals.setProperty(Companion.PROP_COPY_ENABLED,
                Boolean.toString("on".equals(request.getParameter("copyEnabled"))));
        String acks = trim(request.getParameter("acks"));
        if ("auto".equals(acks) || "true".equals(acks) || "false".equals(acks)) {
            JiveGlobals.setProperty(Companion.PROP_ACKS, acks);
        }
        response.sendRedirect(request.getRequestURI() + "?saved=1");
    }

    private void render(HttpServletRequest request, HttpServletResponse response, String notice, String error)
            throws IOException {
        CompanionPlugin plugin = CompanionPlugin.find();
        CompanionPlugin.State rt = plugin == null ? null : plugin.runtime();
        byte[] token = new byte[16];
        random.nextBytes(token);
        StringBuilder hex = new StringBuilder();
        for (byte b : token) {
            hex.append(String.format("%02x", b & 0xff));
        }
        request.getSession().setAttribute(CSRF, hex.toString());

        response.setContentType("text/html; charset=UTF-8");
        response.setHeader("Cache-Control", "no-store");
        PrintWriter w = response.getWriter();
        w.println("<html><head><title>imgw companion</title>");
        w.println("<meta name=\"pageID\" content=\"imgw-companion\"/></head><body>");
        w.println("<p>The companion of the imgw web-chat gateway: user registration, message copies, "
                + "send-as and web presence for the gateway component.</p>");
        if (notice != null) {
            w.println("<div class=\"success\">" + Html.escape(notice) + "</div><br/>");
        }
        if (error != null) {
            w.println("<div class=\"error\">" + Html.escape(error) + "</div><br/>");
        }
        if (rt == null) {
            w.println("<p>The plugin is not running.</p></body></html>");
            return;
        }
        CompanionStats s = rt.stats;
        boolean connected = plugin.gatewayConnected();
        w.println("<div class=\"jive-contentBoxHeader\">Status</div><div class=\"jive-contentBox\"><table>");
        row(w, "Server domain", rt.settings.serverDomain());
        row(w, "Gateway component", rt.settings.gatewayDomain() + (connected ? " \u2014 connected" : " \u2014 NOT connected"));
        row(w, "Registrations (create/update/delete)", Long.toString(s.registrations.get()));
        row(w, "Registration errors", Long.toString(s.registrationErrors.get()));
        row(w, "Messages copied to the gateway", Long.toString(s.copies.get()));
        row(w, "Duplicate copies suppressed", Long.toString(s.duplicates.get()));
        row(w, "Messages sent as a user", Long.toString(s.sentAs.get()));
        row(w, "Send-as requests refused", Long.toString(s.sendAsRefused.get()));
        row(w, "Send-as requests routed once (duplicates dropped)", Long.toString(s.sendAsDuplicates.get()));
        row(w, "Send-as stored offline during the recipient's login / handed over by Openfire / routed again / given up",
                s.loginRaceHeld.get() + " / " + s.loginRaceHandedOver.get() + " / " + s.loginRaceRerouted.get() + " / "
                        + s.loginRaceDropped.get());
        row(w, "Web presence requests (version 0)", Long.toString(s.presenceUpdates.get()));
        row(w, "HTTP user endpoint", "/plugins/" + rt.pluginName + CompanionPlugin.API_PATH
                + (rt.settings.secret().isEmpty() ? " (disabled: no secret)" : " (enabled)"));
        w.println("</table></div>");
        renderVersion1(w, rt.web, rt.ledger, rt.stats, rt.settings, System.currentTimeMillis());

        w.println("<form method=\"post\" action=\"\">");
        w.println("<input type=\"hidden\" name=\"csrf\" value=\"" + Html.escape(hex.toString()) + "\"/>");
        w.println("<div class=\"jive-contentBoxHeader\">Settings</div><div class=\"jive-contentBox\"><table>");
        String configured = JiveGlobals.getProperty(Companion.PROP_GATEWAY_DOMAIN);
        w.println("<tr><td><label for=\"gateway\">Gateway component domain</label><br/><small>"
                + Html.escape(Companion.PROP_GATEWAY_DOMAIN) + ", empty for gw." + Html.escape(rt.settings.serverDomain())
                + "</small></td><td><input type=\"text\" id=\"gateway\" name=\"gateway\" size=\"40\" value=\""
                + Html.escape(configured == null ? "" : configured) + "\"/></td></tr>");
        w.println("<tr><td><label for=\"secret\">Registration secret</label><br/><small>"
                + Html.escape(Companion.PROP_SECRET) + " (X-Imgw-Secret), " + (rt.settings.secret().isEmpty()
                        ? "not set" : "set; leave empty to keep") + "</small></td>"
                + "<td><input type=\"password\" id=\"secret\" name=\"secret\" size=\"40\" autocomplete=\"new-password\"/>"
                + " <label><input type=\"checkbox\" name=\"clearSecret\"/> clear</label></td></tr>");
        w.println("<tr><td><label for=\"copyEnabled\">Copy messages to the gateway</label><br/><small>"
                + Html.escape(Companion.PROP_COPY_ENABLED) + "</small></td><td><input type=\"checkbox\" id=\"copyEnabled\""
                + " name=\"copyEnabled\"" + (rt.settings.copyEnabled() ? " checked=\"checked\"" : "") + "/></td></tr>");
        String mode = rt.settings.acksMode();
        StringBuilder options = new StringBuilder();
        for (String m : new String[] { "auto", "true", "false" }) {
            options.append("<option value=\"").append(m).append('"').append(m.equals(mode) ? " selected=\"selected\"" : "")
                    .append('>').append(m).append("</option>");
        }
        w.println("<tr><td><label for=\"acks\">Acknowledged copies</label><br/><small>"
                + Html.escape(Companion.PROP_ACKS) + ": auto turns them on once a version-1 gateway registers</small></td>"
                + "<td><select id=\"acks\" name=\"acks\">" + options + "</select></td></tr>");
        w.println("</table></div><input type=\"submit\" value=\"Save\"/></form>");
        w.println("<p><small>De-duplication window " + rt.settings.dedupSeconds() + " s ("
                + Html.escape(Companion.PROP_DEDUP_SECONDS) + ", read at plugin start).</small></p>");
        w.println("</body></html>");
    }

    /** Sections 7-9: instances, web users, acknowledged copies. */
    static void renderVersion1(PrintWriter w, WebUsers web, CopyLedger ledger, CompanionStats s, Settings settings,
            long now) {
        java.util.List<WebUsers.InstanceView> instances = web.instances(now);
        w.println("<div class=\"jive-contentBoxHeader\">Gateway instances (version 1)</div><div class=\"jive-contentBox\">");
        if (instances.isEmpty()) {
            w.println("<p>No version-1 gateway instance is registered.</p>");
        } else {
            w.println("<table class=\"jive-table\"><tr><th>Node</th><th>Boot</th><th>Lease left</th><th>Users</th>"
                    + "<th>Waiting for the rest of a list</th><th>Last mark</th></tr>");
            for (WebUsers.InstanceView in : instances) {
                w.println("<tr><td>" + in.node + "</td><td><code>" + Html.escape(in.boot) + "</code></td><td>"
                        + (in.leaseLeftMillis / 1000) + " s</td><td>" + in.users + "</td><td>" + in.pendingOff
                        + "</td><td>" + Html.escape(in.mark == null ? "" : in.mark) + "</td></tr>");
            }
            w.println("</table>");
        }
        w.println("<table>");
        row(w, "Web-online users (any instance, or a version-0 announcement)", Integer.toString(web.webOnlineCount()));
        row(w, "Messages kept out of offline storage", Long.toString(s.offlineAvoided.get()));
        row(w, "Instances registered / ended / of which lease ran out", s.instancesRegistered.get() + " / "
                + s.instancesEnded.get() + " / " + s.leasesExpired.get());
        row(w, "Full lists asked for (resync)", Long.toString(s.resyncs.get()));
        row(w, "Listed users without an account", Long.toString(s.webUnknownUsers.get()));
        row(w, "Web presence broadcasts / sent to one contact", s.webPresenceBroadcasts.get() + " / "
                + s.webPresenceDirected.get());
        w.println("</table></div>");

        w.println("<div class=\"jive-contentBoxHeader\">Acknowledged copies</div><div class=\"jive-contentBox\"><table>");
        row(w, "Acknowledgements", (ledger.enabled() ? "on" : "off") + " (" + Companion.PROP_ACKS + " = "
                + settings.acksMode() + (settings.acksSeen() ? ", a version-1 gateway has registered" : "") + ")");
        row(w, "Unacknowledged copies in memory / in the database", ledger.inMemory() + " / " + ledger.inDatabase());
        row(w, "Resent copies outstanding (window " + settings.ackWindow() + ")", Integer.toString(ledger.outstanding()));
        row(w, "Copies acknowledged", Long.toString(s.copiesAcked.get()));
        row(w, "Copies resent", Long.toString(s.copiesResent.get()));
        row(w, "Copies moved to the database / read back", s.copiesSpilled.get() + " / " + s.copiesLoaded.get());
        row(w, "Copies given up (memory full, database failing)", Long.toString(s.copiesDropped.get()));
        row(w, "Backlog in memory / resend timeout", settings.ackBacklog() + " copies, "
                + (settings.ackBacklogChars() / (1024 * 1024)) + " MiB / " + (settings.ackTimeoutMillis() / 1000) + " s");
        w.println("</table></div>");
    }

    private static void row(PrintWriter w, String label, String value) {
        w.println("<tr><td>" + Html.escape(label) + "</td><td>" + Html.escape(value) + "</td></tr>");
    }

    private static String trim(String s) {
        return s == null ? "" : s.trim();
    }
}
