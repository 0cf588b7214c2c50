package org.jivesoftware.openfire.roster;

import org.jivesoftware.openfire.container.BasicModule;
import org.jivesoftware.openfire.user.UserNotFoundException;

/** Compile-time stand-in for Openfire's RosterManager. Never packaged. */
public class RosterManager extends BasicModule {
    public RosterManager() { super("Roster Manager"); }
    public Roster getRoster(String username) throws UserNotFoundException { throw new UnsupportedOperationException("compile-time stand-in"); }
}
