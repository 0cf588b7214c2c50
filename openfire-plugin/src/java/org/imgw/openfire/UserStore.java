package org.imgw.openfire;

import java.util.Map;

/**
 * The user accounts the companion manages: Openfire's UserManager in production, a map in tests.
 * Errors are this interface's own exceptions so that the mapping to protocol errors
 * ({@link RegistrationService}) can be tested without Openfire.
 */
public interface UserStore {
    /** Thrown by {@link #create} when the username is taken. */
    final class AlreadyExists extends Exception {
        private static final long serialVersionUID = 1L;
    }

    /** Thrown by {@link #update} and {@link #delete} when there is no such user. */
    final class NotFound extends Exception {
        private static final long serialVersionUID = 1L;
    }

    /** True when a user of that (normalized) name exists. */
    boolean exists(String username);

    /**
     * True when the user is an administrator of the server (whether or not the account exists:
     * Openfire's admin list may name accounts yet to be created). The companion never creates,
     * adopts, changes or deletes such an account.
     */
    boolean isAdmin(String username);

    /**
     * How the companion came to manage this account: {@link RegistrationService#CREATED} or
     * {@link RegistrationService#ADOPTED}; null when it does not manage it (or there is no such
     * user).
     */
    String managedBy(String username);

    /** Records that the companion manages this existing account, and how. */
    void markManaged(String username, String how) throws NotFound;

    /**
     * Creates a user.
     *
     * @param name may be null
     * @param email may be null
     * @param properties user properties, keys already prefixed; may be empty
     * @throws UnsupportedOperationException when the user provider is read-only
     */
    void create(String username, String password, String name, String email, Map<String, String> properties)
            throws AlreadyExists;

    /**
     * Changes the given fields of a user; null means "leave unchanged". A property whose value is
     * null is removed.
     */
    void update(String username, String password, String name, String email, Map<String, String> properties)
            throws NotFound;

    /** Deletes a user. */
    void delete(String username) throws NotFound;
}
