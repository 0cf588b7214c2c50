package org.jivesoftware.openfire;

import org.jivesoftware.openfire.container.BasicModule;
import org.jivesoftware.openfire.session.ComponentSession;

/** Compile-time stand-in for Openfire's SessionManager. Never packaged. */
public class SessionManager extends BasicModule {
    public SessionManager() { super("Session Manager"); }
    public ComponentSession getComponentSession(String domain) { throw new UnsupportedOperationException("compile-time stand-in"); }
}
