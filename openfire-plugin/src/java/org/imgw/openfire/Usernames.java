package org.imgw.openfire;

import java.util.Locale;
import java.util.regex.Pattern;

/**
 * Username rules of the companion protocol: after lower-casing, [a-z0-9._-]{1,64}. Every such
 * name is left unchanged by nodeprep and needs no JID escaping, so the web site's user id, the
 * Openfire username and the JID node are one and the same string.
 */
public final class Usernames {
    private static final Pattern VALID = Pattern.compile("[a-z0-9._-]{1,64}");

    private Usernames() {
    }

    /**
     * Lower-cases and checks a username.
     *
     * @param raw the name as received, may be null
     * @return the normalized name
     * @throws CompanionError not-acceptable (modify) when absent or not of the allowed form
     */
    public static String normalize(String raw) throws CompanionError {
        if (raw == null || raw.isEmpty()) {
            throw CompanionError.notAcceptable("missing username");
        }
        String name = raw.toLowerCase(Locale.ROOT);
        if (!VALID.matcher(name).matches()) {
            throw CompanionError.notAcceptable("username must match [a-z0-9._-]{1,64}");
        }
        return name;
    }

    /** True when the name, already lower-case, is of the allowed form. */
    public static boolean isValid(String name) {
        return name != null && VALID.matcher(name).matches();
    }
}
