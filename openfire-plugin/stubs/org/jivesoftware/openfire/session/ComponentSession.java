package org.jivesoftware.openfire.session;

/** Compile-time stand-in for Openfire's ComponentSession interface. Never packaged. */
public interface ComponentSession extends Session {
}
