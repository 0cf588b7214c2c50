package org.jivesoftware.openfire.user;

import java.util.Map;

/** Compile-time stand-in for Openfire's User. Never packaged. */
public class User {
    public String getUsername() { throw new UnsupportedOperationException("compile-time stand-in"); }
    public void setPassword(String password) throws UnsupportedOperationException { throw new UnsupportedOperationException("compile-time stand-in"); }
    public String getName() { throw new UnsupportedOperationException("compile-time stand-in"); }
    public void setName(String name) { throw new UnsupportedOperationException("compile-time stand-in"); }
    public String getEmail() { throw new UnsupportedOperationException("compile-time stand-in"); }
    public void setEmail(String email) { throw new UnsupportedOperationException("compile-time stand-in"); }
    public Map<String, String> getProperties() { throw new UnsupportedOperationException("compile-time stand-in"); }
}
