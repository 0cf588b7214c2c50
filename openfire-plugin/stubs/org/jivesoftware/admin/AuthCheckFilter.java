package org.jivesoftware.admin;

/** Compile-time stand-in for Openfire's AuthCheckFilter (its static exclude list). Never packaged. */
public class AuthCheckFilter {
    public static void addExclude(String exclude) { throw new UnsupportedOperationException("compile-time stand-in"); }
    public static void removeExclude(String exclude) { throw new UnsupportedOperationException("compile-time stand-in"); }
}
