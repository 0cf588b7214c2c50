package org.jivesoftware.openfire.handler;

import org.jivesoftware.openfire.IQHandlerInfo;
import org.jivesoftware.openfire.auth.UnauthorizedException;
import org.jivesoftware.openfire.container.BasicModule;
import org.xmpp.packet.IQ;

/** Stand-in for Openfire's IQHandler (its abstract contract only). Never packaged. */
public abstract class IQHandler extends BasicModule {
    public IQHandler(String moduleName) { super(moduleName); }
    public abstract IQ handleIQ(IQ packet) throws UnauthorizedException;
    public abstract IQHandlerInfo getInfo();
}
