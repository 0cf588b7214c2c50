package org.jivesoftware.openfire;

/** Compile-time stand-in for Openfire's XMPPServerInfo. Never packaged. */
public interface XMPPServerInfo {
    String getXMPPDomain();
}
