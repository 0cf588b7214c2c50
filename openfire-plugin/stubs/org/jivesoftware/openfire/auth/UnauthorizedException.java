package org.jivesoftware.openfire.auth;

/** Stand-in for Openfire's UnauthorizedException. Never packaged. */
public class UnauthorizedException extends Exception {
    private static final long serialVersionUID = 1L;
    public UnauthorizedException() { }
    public UnauthorizedException(String msg) { super(msg); }
}
