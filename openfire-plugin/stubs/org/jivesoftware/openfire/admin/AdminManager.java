package org.jivesoftware.openfire.admin;

/**
 * Compile-time stand-in for Openfire's AdminManager: the two methods the plugin uses, with the
 * signatures shared by Openfire 4.1 and 5.x. Never packaged.
 */
public class AdminManager {
    private AdminManager() { }
    public static AdminManager getInstance() { throw new UnsupportedOperationException("compile-time stand-in"); }
    public boolean isUserAdmin(String username, boolean allowAdminIfEmpty) { throw new UnsupportedOperationException("compile-time stand-in"); }
}
