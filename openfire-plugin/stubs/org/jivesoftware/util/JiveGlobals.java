package org.jivesoftware.util;

/** Compile-time stand-in for Openfire's JiveGlobals (system properties). Never packaged. */
public class JiveGlobals {
    public static String getProperty(String name) { throw new UnsupportedOperationException("compile-time stand-in"); }
    public static String getProperty(String name, String defaultValue) { throw new UnsupportedOperationException("compile-time stand-in"); }
    public static int getIntProperty(String name, int defaultValue) { throw new UnsupportedOperationException("compile-time stand-in"); }
    public static boolean getBooleanProperty(String name, boolean defaultValue) { throw new UnsupportedOperationException("compile-time stand-in"); }
    public static void setProperty(String name, String value) { throw new UnsupportedOperationException("compile-time stand-in"); }
    public static void deleteProperty(String name) { throw new UnsupportedOperationException("compile-time stand-in"); }
}
