package org.imgw.openfire;

import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * The HTTP user endpoint's logic, free of the servlet API: the site's backend POSTs one JSON
 * object per request with the header {@code X-Imgw-Secret}.
 *
 * <pre>{"action":"create","username":"buyer42","password":"…","name":"…","email":"…",
 *  "properties":{"type":"buyer","shop":"1234"}}</pre>
 *
 * Answers {@code {"ok":true,"action":"create","username":"buyer42","status":"created"}} (201 for
 * a created account, 200 otherwise; status as in {@link RegistrationService}) or
 * {@code {"ok":false,"error":"conflict","message":"…"}} with the HTTP status of {@link #status}.
 */
public final class UserApi {
    /** Name of the request header that carries the shared secret. */
    public static final String SECRET_HEADER = "X-Imgw-Secret";
    /** Largest accepted request body, in bytes. */
    public static final int MAX_BODY = 64 * 1024;

    /** Status and JSON text of an answer. */
    public static final class Response {
        public final int status;
        public final String json;

        Response(int status, String json) {
            this.status = status;
            this.json = json;
        }
    }

    private final Settings settings;
    private final RegistrationService registration;

    public UserApi(Settings settings, RegistrationService registration) {
        this.settings = settings;
        this.registration = registration;
    }

    /**
     * Handles one request.
     *
     * @param secret the X-Imgw-Secret header, may be null
     * @param body the request body decoded as UTF-8, may be null
     */
    public Response handle(String secret, String body) {
        String expected = settings.secret();
        if (expected == null || expected.isEmpty()) {
            return failure(503, "service-unavailable", "the endpoint is disabled: set " + Companion.PROP_SECRET);
        }
        if (!secretMatches(expected, secret)) {
            return failure(401, "not-authorized", "bad or missing " + SECRET_HEADER);
        }
        if (body == null || body.isEmpty()) {
            return failure(400, "bad-request", "empty body");
        }
        UserRequest request;
        try {
            request = parse(body);
        } catch (Json.ParseException e) {
            return failure(400, "bad-request", "invalid JSON: " + e.getMessage());
        } catch (CompanionError e) {
            return failure(e);
        }
        String outcome;
        try {
            outcome = registration.apply(request);
        } catch (CompanionError e) {
            return failure(e);
        }
        StringBuilder sb = new StringBuilder("{\"ok\":true,\"action\":");
        Json.quote(sb, request.action.name().toLowerCase(java.util.Locale.ROOT)).append(",\"username\":");
        Json.quote(sb, request.username).append(",\"status\":");
        Json.quote(sb, outcome).append('}');
        return new Response(RegistrationService.CREATED.equals(outcome) ? 201 : 200, sb.toString());
    }

    /** Reads the JSON request into a validated {@link UserRequest}. */
    static UserRequest parse(String body) throws Json.ParseException, CompanionError {
        Object root = Json.parse(body);
        if (!(root instanceof Map)) {
            throw CompanionError.badRequest("the body must be a JSON object");
        }
        Map<?, ?> m = (Map<?, ?>) root;
        Map<String, String> props = new LinkedHashMap<String, String>();
        Object p = m.get("properties");
        if (p != null) {
            if (!(p instanceof Map)) {
                throw CompanionError.badRequest("properties must be an object");
            }
            for (Map.Entry<?, ?> e : ((Map<?, ?>) p).entrySet()) {
                props.put((String) e.getKey(), scalar(e.getValue(), "properties." + e.getKey()));
            }
        }
        return new UserRequest(scalar(m.get("action"), "action"), scalar(m.get("username"), "username"),
                scalar(m.get("password"), "password"), scalar(m.get("name"), "name"),
                scalar(m.get("email"), "email"), props);
    }

    private static String scalar(Object v, String what) throws CompanionError {
        if (v == null) {
            return null;
        }
        if (v instanceof String) {
            return (String) v;
        }
        if (v instanceof Long || v instanceof Boolean) {
            return v.toString();
        }
        throw CompanionError.badRequest(what + " must be a string");
    }

    /**
     * Compares secrets in time independent of where they differ and of their lengths: both
     * are hashed first, then the digests are compared with MessageDigest.isEqual.
     */
    static boolean secretMatches(String expected, String given) {
        if (given == null) {
            return false;
        }
        try {
            MessageDigest sha = MessageDigest.getInstance("SHA-256");
            byte[] a = sha.digest(expected.getBytes(StandardCharsets.UTF_8));
            byte[] b = sha.digest(given.getBytes(StandardCharsets.UTF_8));
            return MessageDigest.isEqual(a, b);
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException("SHA-256 is part of every Java platform", e);
        }
    }

    /** HTTP status for a protocol error. */
    static int status(CompanionError e) {
        switch (e.condition()) {
        case bad_request:
        case not_acceptable:
            return 400;
        case forbidden:
        case not_allowed:
            return 403;
        case item_not_found:
            return 404;
        case conflict:
            return 409;
        default:
            return 500;
        }
    }

    private static Response failure(CompanionError e) {
        return failure(status(e), e.condition().toXMPP(), e.getMessage());
    }

    private static Response failure(int status, String error, String message) {
        StringBuilder sb = new StringBuilder("{\"ok\":false,\"error\":");
        Json.quote(sb, error).append(",\"message\":");
        Json.quote(sb, message == null ? error : message).append('}');
        return new Response(status, sb.toString());
    }
}
