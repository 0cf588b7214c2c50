package org.imgw.openfire;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import javax.servlet.http.HttpServlet;
import javax.servlet.http.HttpServletRequest;
import javax.servlet.http.HttpServletResponse;

/**
 * POST /plugins/userregister/users: the site's backend creates, updates and deletes users. The
 * path is excluded from the admin login (exactly, no wildcard); the X-Imgw-Secret header
 * authenticates instead. All logic is in {@link UserApi}.
 */
public final class UsersApiServlet extends HttpServlet {
    private static final long serialVersionUID = 1L;

    @Override
    protected void doPost(HttpServletRequest request, HttpServletResponse response) throws IOException {
        CompanionPlugin plugin = CompanionPlugin.find();
        CompanionPlugin.State rt = plugin == null ? null : plugin.runtime();
        UserApi.Response answer;
        if (rt == null) {
            answer = new UserApi.Response(503, "{\"ok\":false,\"error\":\"service-unavailable\"}");
        } else if (request.getContentLength() > UserApi.MAX_BODY) {
            answer = new UserApi.Response(413, "{\"ok\":false,\"error\":\"too-large\"}");
        } else {
            String body = readBody(request.getInputStream());
            answer = body == null ? new UserApi.Response(413, "{\"ok\":false,\"error\":\"too-large\"}")
                    : rt.api.handle(request.getHeader(UserApi.SECRET_HEADER), body);
        }
        byte[] out = answer.json.getBytes(StandardCharsets.UTF_8);
        response.setStatus(answer.status);
        response.setHeader("Cache-Control", "no-store");
        response.setContentType("application/json; charset=UTF-8");
        response.setContentLength(out.length);
        response.getOutputStream().write(out);
    }

    /** Reads at most MAX_BODY bytes as UTF-8; null when the body is longer. */
    private static String readBody(InputStream in) throws IOException {
        ByteArrayOutputStream buf = new ByteArrayOutputStream();
        byte[] chunk = new byte[4096];
        int n;
        while ((n = in.read(chunk)) > 0) {
            if (buf.size() + n > UserApi.MAX_BODY) {
                return null;
            }
            buf.write(chunk, 0, n);
        }
        return new String(buf.toByteArray(), StandardCharsets.UTF_8);
    }
}
