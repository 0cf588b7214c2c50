package org.imgw.openfire;

import org.xmpp.packet.PacketError;

/**
 * A protocol failure that maps to one RFC 6120 stanza error (condition and type). Thrown by the
 * parsers and services and turned into an IQ error, an error message or an HTTP status at the edge.
 */
public final class CompanionError extends Exception {
    private static final long serialVersionUID = 1L;

    private final PacketError.Condition condition;
    private final PacketError.Type type;

    public CompanionError(PacketError.Condition condition, PacketError.Type type, String message) {
        super(message);
        this.condition = condition;
        this.type = type;
    }

    public PacketError.Condition condition() {
        return condition;
    }

    public PacketError.Type type() {
        return type;
    }

    /** The error as a fresh Tinder PacketError, ready to attach to a reply. */
    public PacketError toPacketError() {
        return new PacketError(condition, type);
    }

    public static CompanionError forbidden(String why) {
        return new CompanionError(PacketError.Condition.forbidden, PacketError.Type.auth, why);
    }

    public static CompanionError badRequest(String why) {
        return new CompanionError(PacketError.Condition.bad_request, PacketError.Type.modify, why);
    }

    public static CompanionError notAcceptable(String why) {
        return new CompanionError(PacketError.Condition.not_acceptable, PacketError.Type.modify, why);
    }

    public static CompanionError itemNotFound(String why) {
        return new CompanionError(PacketError.Condition.item_not_found, PacketError.Type.cancel, why);
    }

    public static CompanionError conflict(String why) {
        return new CompanionError(PacketError.Condition.conflict, PacketError.Type.cancel, why);
    }

    public static CompanionError notAllowed(String why) {
        return new CompanionError(PacketError.Condition.not_allowed, PacketError.Type.cancel, why);
    }

    public static CompanionError internal(String why) {
        return new CompanionError(PacketError.Condition.internal_server_error, PacketError.Type.cancel, why);
    }
}
