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
