package org.imgw.openfire;

import org.jivesoftware.openfire.IQHandlerInfo;
import org.jivesoftware.openfire.handler.IQHandler;
import org.xmpp.packet.IQ;

/**
 * An Openfire IQ handler for one companion namespace ({@link Companion#NS} or
 * {@link Companion#NS1}); the logic is in {@link CompanionIq} and {@link CompanionIq1}.
 * Openfire's IQRouter picks a server handler by the child's namespace alone.
 */
final class CompanionIQHandler extends IQHandler {
    /** The protocol logic behind a handler. */
    interface Logic {
        IQ handle(IQ iq);
    }

    private final IQHandlerInfo info;
    private final Logic logic;

    CompanionIQHandler(String element, String namespace, Logic logic) {
        super("imgw companion " + namespace);
        this.info = new IQHandlerInfo(element, namespace);
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
