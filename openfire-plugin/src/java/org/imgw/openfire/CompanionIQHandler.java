package org.imgw.openfire;

import org.jivesoftware.openfire.IQHandlerInfo;
import org.jivesoftware.openfire.handler.IQHandler;
import org.xmpp.packet.IQ;

/** The Openfire IQ handler for {@link Companion#NS}; all logic is in {@link CompanionIq}. */
final class CompanionIQHandler extends IQHandler {
    private final IQHandlerInfo info = new IQHandlerInfo("user", Companion.NS);
    private final CompanionIq logic;

    CompanionIQHandler(CompanionIq logic) {
        super("imgw companion");
        this.logic = logic;
    }

    @Override
    public IQ handleIQ(IQ packet) {
        return logic.handle(packet);
    }

    @Override
    public IQHandlerInfo getInfo() {
        return info;
    }
}
