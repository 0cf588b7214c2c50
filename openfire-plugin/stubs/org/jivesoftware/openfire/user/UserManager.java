package org.jivesoftware.openfire.user;

/** Compile-time stand-in for Openfire's UserManager. Never packaged. */
public class UserManager {
    private UserManager() { }
    public static UserManager getInstance() { throw new UnsupportedOperationException("compile-time stand-in"); }
    public User createUser(String username, String password, String name, String email)
            throws UserAlreadyExistsException { throw new UnsupportedOperationException("compile-time stand-in"); }
    public void deleteUser(User user) { throw new UnsupportedOperationException("compile-time stand-in"); }
    public User getUser(String username) throws UserNotFoundException { throw new UnsupportedOperationException("compile-time stand-in"); }
}
