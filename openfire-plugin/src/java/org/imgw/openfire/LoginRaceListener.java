package org.imgw.openfire;

import org.jivesoftware.openfire.OfflineMessage;
import org.jivesoftware.openfire.OfflineMessageListener;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import org.xmpp.packet.Message;

/**
 * Openfire's offline-storage events, for section 10 ({@link LoginRace}). Openfire 4.1 through 4.6
 * call {@code messageStored(Message)}; 4.7 and later declare {@code messageStored(OfflineMessage)}
 * instead. Both are implemented, so the one this Openfire's interface names is found at run time
 * (the JVM resolves an interface call by name and descriptor). Openfire 4.1 does not guard its
 * dispatch against a throwing listener, and the dispatch runs on the routing thread, so nothing
 * escapes and nothing blocks here.
 */
final class LoginRaceListener implements OfflineMessageListener {
    private static final Logger Log = LoggerFactory.getLogger(LoginRaceListener.class);

    private final LoginRace race;
    private final MessageFlow.Clock clock;

    LoginRaceListener(LoginRace race, MessageFlow.Clock clock) {
        this.race = race;
        this.clock = clock;
    }

    /** Openfire 4.1-4.6. */
    @Override
    public void messageStored(Message message) {
        onStored(message);
    }

    /** Openfire 4.7 and later (not in the 4.1 interface this compiles against). */
    public void messageStored(OfflineMessage message) {
        onStored(message);
    }

    @Override
    public void messageBounced(Message message) {
    }

    private void onStored(Message message) {
        if (message == null) {
            return;
        }
        try {
            race.stored(message, clock.now());
        } catch (RuntimeException e) {
            Log.warn("imgw: keeping a message stored during a login failed", e);
        }
    }
}
