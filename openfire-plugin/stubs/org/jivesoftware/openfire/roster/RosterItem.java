package org.jivesoftware.openfire.roster;

import org.xmpp.packet.JID;

/** Stand-in for Openfire's RosterItem (subscription state and JID). Never packaged. */
public class RosterItem {
    public enum SubType { REMOVE, NONE, TO, FROM, BOTH }

    public static final SubType SUB_REMOVE = SubType.REMOVE;
    public static final SubType SUB_NONE = SubType.NONE;
    public static final SubType SUB_TO = SubType.TO;
    public static final SubType SUB_FROM = SubType.FROM;
    public static final SubType SUB_BOTH = SubType.BOTH;

    public SubType getSubStatus() { throw new UnsupportedOperationException("compile-time stand-in"); }
    public JID getJid() { throw new UnsupportedOperationException("compile-time stand-in"); }
}
