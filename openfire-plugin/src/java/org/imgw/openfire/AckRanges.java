package org.imgw.openfire;

import java.util.ArrayList;
import java.util.List;

/**
 * Parses the text of an {@code <acks>} request (section 9): sequence numbers and inclusive
 * ranges {@code A-B}, separated by whitespace. No I/O; every malformed input is a bad-request.
 */
public final class AckRanges {
    /** Most characters of text accepted in one request. */
    public static final int MAX_CHARS = 8192;
    /** Most digits of one number (a sequence number is at most 20 digits). */
    static final int MAX_DIGITS = 20;

    private AckRanges() {
    }

    /**
     * @param text the element's text; may be null or blank (nothing acknowledged)
     * @return pairs {first, last} with first &lt;= last, in the order given. A number too large
     *         for a long names no copy the companion made and is left out.
     * @throws CompanionError bad-request for text over {@link #MAX_CHARS}, a token that is not a
     *         number or range, or a range whose end is below its start
     */
    public static List<long[]> parse(String text) throws CompanionError {
        List<long[]> out = new ArrayList<long[]>();
        if (text == null) {
            return out;
        }
        if (text.length() > MAX_CHARS) {
            throw CompanionError.badRequest("acks: more than " + MAX_CHARS + " characters");
        }
        int i = 0;
        int n = text.length();
        while (i < n) {
            char c = text.charAt(i);
            if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
                i++;
                continue;
            }
            int start = i;
            while (i < n && !isSpace(text.charAt(i))) {
                i++;
            }
            String token = text.substring(start, i);
            int dash = token.indexOf('-');
            long first;
            long last;
            if (dash < 0) {
                first = number(token);
                last = first;
            } else {
                first = number(token.substring(0, dash));
                last = number(token.substring(dash + 1));
                if (first >= 0 && last >= 0 && last < first) {
                    throw CompanionError.badRequest("acks: range end below its start: " + token);
                }
            }
            if (first < 0 || last < 0) {
                // Past Long.MAX_VALUE: no copy has such a number.
                if (first >= 0 && last < 0) {
                    out.add(new long[] { first, Long.MAX_VALUE });
                }
                continue;
            }
            out.add(new long[] { first, last });
        }
        return out;
    }

    private static boolean isSpace(char c) {
        return c == ' ' || c == '\t' || c == '\n' || c == '\r';
    }

    /** The value of 1-20 ASCII digits, or -1 when it does not fit in a long. */
    private static long number(String s) throws CompanionError {
        if (s.isEmpty() || s.length() > MAX_DIGITS) {
            throw CompanionError.badRequest("acks: malformed number");
        }
        long v = 0;
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            if (c < '0' || c > '9') {
                throw CompanionError.badRequest("acks: malformed number");
            }
            int d = c - '0';
            if (v > (Long.MAX_VALUE - d) / 10) {
                // Keep checking the remaining characters for a clean error on garbage.
                for (int j = i + 1; j < s.length(); j++) {
                    if (s.charAt(j) < '0' || s.charAt(j) > '9') {
                        throw CompanionError.badRequest("acks: malformed number");
                    }
                }
                return -1;
            }
            v = v * 10 + d;
        }
        return v;
    }
}
