package org.jivesoftware.openfire.user;

/** Stand-in for Openfire's UserNotFoundException. Never packaged. */
public class UserNotFoundException extends Exception {
    private static final long serialVersionUID = 1L;
    public UserNotFoundException() { }
    public UserNotFoundException(String msg) { super(msg); }
}
