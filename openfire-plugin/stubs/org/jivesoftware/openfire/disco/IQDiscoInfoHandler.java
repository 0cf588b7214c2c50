package org.jivesoftware.openfire.disco;

import org.jivesoftware.openfire.IQHandlerInfo;
import org.jivesoftware.openfire.handler.IQHandler;
import org.xmpp.packet.IQ;

/** Compile-time stand-in for Openfire's IQDiscoInfoHandler. Never packaged. */
public class IQDiscoInfoHandler extends IQHandler {
    public IQDiscoInfoHandler() { super("XMPP Disco Info Handler"); }
    @Override public IQ handleIQ(IQ packet) { throw new UnsupportedOperationException("compile-time stand-in"); }
    @Override public IQHandlerInfo getInfo() { throw new UnsupportedOperationException("compile-time stand-in"); }
    public void addServerFeature(String namespace) { throw new UnsupportedOperationException("compile-time stand-in"); }
    public void removeServerFeature(String namespace) { throw new UnsupportedOperationException("compile-time stand-in"); }
}
