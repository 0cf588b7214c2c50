package org.jivesoftware.openfire;

import org.jivesoftware.openfire.container.BasicModule;
import org.jivesoftware.openfire.handler.IQHandler;

/** Compile-time stand-in for Openfire's IQRouter. Never packaged. */
public class IQRouter extends BasicModule {
    public IQRouter() { super("XMPP IQ Router"); }
    public void addHandler(IQHandler handler) { throw new UnsupportedOperationException("compile-time stand-in"); }
    public void removeHandler(IQHandler handler) { throw new UnsupportedOperationException("compile-time stand-in"); }
}
