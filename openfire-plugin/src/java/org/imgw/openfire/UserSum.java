package org.imgw.openfire;

import java.nio.charset.StandardCharsets;

/**
 * The checksum of a set of user names (section 7, {@code sum}): the XOR of the 64-bit FNV-1a
 * hashes of the names' UTF-8 bytes, written as 16 lower-case hex digits. XOR makes it
 * independent of order and lets the companion update it per added or removed name.
 */
public final class UserSum {
    private static final long OFFSET = 0xcbf29ce484222325L;
    private static final long PRIME = 0x100000001b3L;

    private UserSum() {
    }

    /** FNV-1a, 64 bits, over the UTF-8 bytes of the name. */
    public static long hash(String name) {
        long h = OFFSET;
        for (byte b : name.getBytes(StandardCharsets.UTF_8)) {
            h ^= b & 0xff;
            h *= PRIME;
        }
        return h;
    }

    /** The sum of a set of names (0 for the empty set). */
    public static long of(Iterable<String> names) {
        long sum = 0;
        for (String n : names) {
            sum ^= hash(n);
        }
        return sum;
    }

    /** 16 lower-case hex digits. */
    public static String hex(long sum) {
        String s = Long.toHexString(sum);
        return "0000000000000000".substring(s.length()) + s;
    }

    /**
     * Parses 16 hex digits (either case).
     *
     * @throws CompanionError bad-request when the text is not exactly 16 hex digits
     */
    public static long parse(String text) throws CompanionError {
        if (text == null || text.length() != 16) {
            throw CompanionError.badRequest("sum must be 16 hex digits");
        }
        long v = 0;
        for (int i = 0; i < 16; i++) {
            char c = text.charAt(i);
            // Character.digit alone would also take non-ASCII digits.
            int d = c < 128 ? Character.digit(c, 16) : -1;
            if (d < 0) {
                throw CompanionError.badRequest("sum must be 16 hex digits");
            }
            v = (v << 4) | d;
        }
        return v;
    }
}
