package org.jivesoftware.openfire;

import org.jivesoftware.openfire.container.PluginManager;
import org.jivesoftware.openfire.disco.IQDiscoInfoHandler;
import org.jivesoftware.openfire.roster.RosterManager;
import org.jivesoftware.openfire.user.UserManager;
import org.xmpp.packet.JID;

/** Compile-time stand-in for Openfire's XMPPServer (members shared by 4.1 and 5.x). Never packaged. */
public class XMPPServer {
    public static XMPPServer getInstance() { throw new UnsupportedOperationException("compile-time stand-in"); }
    public XMPPServerInfo getServerInfo() { throw new UnsupportedOperationException("compile-time stand-in"); }
    public boolean isLocal(JID jid) { throw new UnsupportedOperationException("compile-time stand-in"); }
    public RosterManager getRosterManager() { throw new UnsupportedOperationException("compile-time stand-in"); }
    public PacketRouter getPacketRouter() { throw new UnsupportedOperationException("compile-time stand-in"); }
    public PluginManager getPluginManager() { throw new UnsupportedOperationException("compile-time stand-in"); }
    public SessionManager getSessionManager() { throw new UnsupportedOperationException("compile-time stand-in"); }
    public IQRouter getIQRouter() { throw new UnsupportedOperationException("compile-time stand-in"); }
    public UserManager getUserManager() { throw new UnsupportedOperationException("compile-time stand-in"); }
    public IQDiscoInfoHandler getIQDiscoInfoHandler() { throw new UnsupportedOperationException("compile-time stand-in"); }
}
