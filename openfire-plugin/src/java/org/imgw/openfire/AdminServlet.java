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
 * component is connected, the counters, and the settings. Behind the admin login; form posts
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
        row(w, "Web presence updates", Long.toString(s.presenceUpdates.get()));
        row(w, "HTTP user endpoint", "/plugins/" + rt.pluginName + CompanionPlugin.API_PATH
                + (rt.settings.secret().isEmpty() ? " (disabled: no secret)" : " (enabled)"));
        w.println("</table></div>");

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
        w.println("</table></div><input type=\"submit\" value=\"Save\"/></form>");
        w.println("<p><small>De-duplication window " + rt.settings.dedupSeconds() + " s ("
                + Html.escape(Companion.PROP_DEDUP_SECONDS) + ", read at plugin start).</small></p>");
        w.println("</body></html>");
    }

    private static void row(PrintWriter w, String label, String value) {
        w.println("<tr><td>" + Html.escape(label) + "</td><td>" + Html.escape(value) + "</td></tr>");
    }

    private static String trim(String s) {
        return s == null ? "" : s.trim();
    }
}
