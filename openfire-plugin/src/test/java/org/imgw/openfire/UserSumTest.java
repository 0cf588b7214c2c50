package org.imgw.openfire;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.fail;

import java.util.Arrays;
import java.util.Collections;
import org.junit.Test;

public class UserSumTest {
    @Test
    public void publishedFnv1a64Vectors() {
        assertEquals("cbf29ce484222325", UserSum.hex(UserSum.hash("")));
        assertEquals("af63dc4c8601ec8c", UserSum.hex(UserSum.hash("a")));
    }

    /** The vector shared with the gateway and the Prosody module (docs/companion-protocol.md section 7). */
    @Test
    public void sharedVectorAliceAndBob() {
        assertEquals("508b2abb65a03907", UserSum.hex(UserSum.hash("alice")));
        assertEquals("004d4419134a0a54", UserSum.hex(UserSum.hash("bob")));
        assertEquals("50c66ea276ea3353", UserSum.hex(UserSum.of(Arrays.asList("alice", "bob"))));
        assertEquals("order does not matter", "50c66ea276ea3353", UserSum.hex(UserSum.of(Arrays.asList("bob", "alice"))));
        assertEquals("0000000000000000", UserSum.hex(UserSum.of(Collections.<String>emptyList())));
    }

    @Test
    public void parsesSixteenHexDigitsOfEitherCase() throws CompanionError {
        assertEquals(0x50c66ea276ea3353L, UserSum.parse("50c66ea276ea3353"));
        assertEquals(0x50c66ea276ea3353L, UserSum.parse("50C66EA276EA3353"));
        assertEquals(-1L, UserSum.parse("ffffffffffffffff"));
        for (String bad : new String[] { null, "", "50c66ea276ea335", "50c66ea276ea33530", "50c66ea276ea335g",
            "50c66ea276ea335\uff11", "-0c66ea276ea3353" }) {
            try {
                UserSum.parse(bad);
                fail(bad);
            } catch (CompanionError expected) {
                assertEquals(org.xmpp.packet.PacketError.Condition.bad_request, expected.condition());
            }
        }
    }
}
