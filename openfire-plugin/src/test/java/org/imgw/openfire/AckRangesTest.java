package org.imgw.openfire;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.fail;

import java.util.List;
import org.junit.Test;

public class AckRangesTest {
    @Test
    public void numbersAndRanges() throws CompanionError {
        List<long[]> r = AckRanges.parse(" 1796070850196001 1796070850196003-1796070850196009\n\t7 ");
        assertEquals(3, r.size());
        assertArrayEquals(new long[] { 1796070850196001L, 1796070850196001L }, r.get(0));
        assertArrayEquals(new long[] { 1796070850196003L, 1796070850196009L }, r.get(1));
        assertArrayEquals(new long[] { 7, 7 }, r.get(2));
        assertEquals(0, AckRanges.parse("").size());
        assertEquals(0, AckRanges.parse(null).size());
        assertEquals(1, AckRanges.parse("5-5").size());
    }

    @Test
    public void numbersPastLongAreNoCopyOfOurs() throws CompanionError {
        assertEquals(0, AckRanges.parse("99999999999999999999").size());
        List<long[]> r = AckRanges.parse("5-99999999999999999999");
        assertArrayEquals(new long[] { 5, Long.MAX_VALUE }, r.get(0));
    }

    @Test
    public void malformedTextIsABadRequest() {
        StringBuilder huge = new StringBuilder();
        while (huge.length() <= AckRanges.MAX_CHARS) {
            huge.append("1234567890 ");
        }
        for (String bad : new String[] { "x", "1,2", "-5", "5-", "1-2-3", "9-3", "+5", "123456789012345678901",
            "1e5", "\uff11", huge.toString() }) {
            try {
                AckRanges.parse(bad);
                fail(bad);
            } catch (CompanionError expected) {
                assertEquals(org.xmpp.packet.PacketError.Condition.bad_request, expected.condition());
            }
        }
    }
}
