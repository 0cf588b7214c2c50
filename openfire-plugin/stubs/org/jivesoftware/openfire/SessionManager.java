package org.jivesoftware.openfire;

import java.util.Collection;
import org.jivesoftware.openfire.container.BasicModule;
import org.jivesoftware.openfire.session.ClientSession;
import org.jivesoftware.openfire.session.ComponentSession;

/** Compile-time stand-in for Openfire's SessionManager. Never packaged. */
public class SessionManager extends BasicModule {
    public SessionManager() { super("Session Manager"); }
    public Collection<ClientSession> getSessions(String username) { throw new UnsupportedOperationException("compile-time stand-in"); }
    public ComponentSession getComponentSession(String domain) { throw new UnsupportedOperationException("compile-time stand-in"); }
}
