package org.imgw.openfire;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertNull;
import static org.junit.Assert.fail;

import java.util.Arrays;
import java.util.Map;
import org.junit.Test;

public class JsonTest {
    @Test
    public void parsesValues() throws Exception {
        Map<?, ?> m = (Map<?, ?>) Json.parse(" {\"a\":\"x\\n\\\"y\\\" \\u00e9\\/\",\"b\":[1,-2.5,true,false,null],"
                + "\"c\":{},\"d\":[]} ");
        assertEquals("x\n\"y\" \u00e9/", m.get("a"));
        assertEquals(Arrays.asList(1L, -2.5, true, false, null), m.get("b"));
        assertEquals(0, ((Map<?, ?>) m.get("c")).size());
        assertNull(Json.parse("null"));
        assertEquals("\ud83d\ude00", Json.parse("\"\\ud83d\\ude00\""));
    }

    @Test
    public void rejectsMalformedInput() {
        String[] bad = { "", "{", "{\"a\"}", "{\"a\":1,}", "[1,]", "{\"a\":1}x", "01", "1.", "-", "\"\\x\"",
            "\"unterminated", "{\"a\":1,\"a\":2}", "tru", "\"a\u0001\"", "{a:1}", "\"\\u12\"" };
        for (String s : bad) {
            try {
                Json.parse(s);
                fail("accepted " + s);
            } catch (Json.ParseException expected) {
                // fine
            }
        }
    }

    @Test
    public void limitsNesting() {
        StringBuilder sb = new StringBuilder();
        for (int i = 0; i < 100; i++) {
            sb.append('[');
        }
        try {
            Json.parse(sb.toString());
            fail();
        } catch (Json.ParseException expected) {
            // fine
        }
    }

    @Test
    public void quotes() {
        assertEquals("\"a\\\"b\\\\c\\n\\u003c/\\u0001\"", Json.quote(new StringBuilder(), "a\"b\\c\n</\u0001").toString());
    }
}
