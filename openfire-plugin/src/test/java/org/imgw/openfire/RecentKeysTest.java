package org.imgw.openfire;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertTrue;

import org.junit.Test;

public class RecentKeysTest {
    @Test
    public void rememberedForTheWindow() {
        RecentKeys keys = new RecentKeys(1000, 10);
        assertTrue(keys.firstSeen("a", 0));
        assertFalse(keys.firstSeen("a", 999));
        assertTrue(keys.firstSeen("a", 1000));
        assertFalse(keys.firstSeen("a", 1500));
    }

    @Test
    public void expiredKeysAreDropped() {
        RecentKeys keys = new RecentKeys(1000, 10);
        keys.firstSeen("a", 0);
        keys.firstSeen("b", 500);
        keys.firstSeen("c", 1200);
        assertEquals("a expired", 2, keys.size());
    }

    @Test
    public void boundedInSize() {
        RecentKeys keys = new RecentKeys(1000000, 3);
        for (int i = 0; i < 10; i++) {
            assertTrue(keys.firstSeen("k" + i, i));
        }
        assertEquals(3, keys.size());
        assertTrue("the oldest went first", keys.firstSeen("k0", 20));
        assertFalse(keys.firstSeen("k9", 21));
    }
}
