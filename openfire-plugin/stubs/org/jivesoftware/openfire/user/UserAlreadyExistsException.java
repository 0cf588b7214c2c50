package org.jivesoftware.openfire.user;

/** Stand-in for Openfire's UserAlreadyExistsException. Never packaged. */
public class UserAlreadyExistsException extends Exception {
    private static final long serialVersionUID = 1L;
    public UserAlreadyExistsException() { }
    public UserAlreadyExistsException(String msg) { super(msg); }
}
