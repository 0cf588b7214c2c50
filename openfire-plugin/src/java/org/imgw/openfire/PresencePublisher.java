package org.imgw.openfire;

/**
 * Broadcasts a user's web presence (section 4) to the user's roster subscribers: Openfire's
 * roster in production, a list in tests.
 */
public interface PresencePublisher {
    /**
     * @param username an existing user's name
     * @param available true for available, false for unavailable
     */
    void publish(String username, boolean available);
}
