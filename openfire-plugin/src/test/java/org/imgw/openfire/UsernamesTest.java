package org.imgw.openfire;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import org.junit.Test;
import org.xmpp.packet.PacketError;

public class UsernamesTest {
    @Test
    public void acceptsTheAllowedAlphabet() throws Exception {
        assertEquals("buyer42", Usernames.normalize("buyer42"));
        assertEquals("a.b_c-d", Usernames.normalize("a.b_c-d"));
        assertEquals("x", Usernames.normalize("x"));
        String max = repeat('a', 64);
        assertEquals(max, Usernames.normalize(max));
    }

    @Test
    public void lowerCasesFirst() throws Exception {
        assertEquals("buyer42", Usernames.normalize("Buyer42"));
        assertEquals("shopadmin", Usernames.normalize("SHOPADMIN"));
    }

    @Test
    public void rejectsEverythingElseWithNotAcceptable() {
        String[] bad = { null, "", " buyer", "buyer 42", "a@b", "a/b", "a:b", "m\u00fcller", "a\u0000b",
            repeat('a', 65), "\u0130stanbul", "tab\t", "quote'" };
        for (String name : bad) {
            try {
                Usernames.normalize(name);
                fail("accepted " + name);
            } catch (CompanionError e) {
                assertEquals(PacketError.Condition.not_acceptable, e.condition());
                assertEquals(PacketError.Type.modify, e.type());
            }
        }
    }

    @Test
    public void isValidNeedsLowerCase() {
        assertTrue(Usernames.isValid("abc"));
        assertFalse(Usernames.isValid("Abc"));
        assertFalse(Usernames.isValid(null));
    }

    static String repeat(char c, int n) {
        StringBuilder sb = new StringBuilder();
        for (int i = 0; i < n; i++) {
            sb.append(c);
        }
        return sb.toString();
    }
}
