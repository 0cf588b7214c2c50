package org.jivesoftware.openfire.interceptor;

/** Stand-in for Openfire's PacketRejectedException. Never packaged. */
public class PacketRejectedException extends Exception {
    private static final long serialVersionUID = 1L;
    public PacketRejectedException() { }
    public PacketRejectedException(String msg) { super(msg); }
}
