package org.imgw.openfire;

/** Names shared by the companion protocol (docs/companion-protocol.md) and its Openfire settings. */
public final class Companion {
    /** The protocol's namespace: registration, web presence, copies and disco feature. */
    public static final String NS = "urn:imgw:companion:0";
    public static final String NS_FORWARD = "urn:xmpp:forward:0";
    public static final String NS_DELAY = "urn:xmpp:delay";
    public static final String NS_PRIVILEGE = "urn:xmpp:privilege:2";
    public static final String NS_CLIENT = "jabber:client";

    /** Resource given to a send-as message whose inner 'from' is a bare JID, and to web presence. */
    public static final String WEB_RESOURCE = "web";
    /** Openfire user properties written by registration carry this prefix. */
    public static final String USER_PROPERTY_PREFIX = "imgw.";

    /** Openfire system property: the gateway's component domain (default gw.DOMAIN). */
    public static final String PROP_GATEWAY_DOMAIN = "plugin.imgw.gateway.domain";
    /** Openfire system property: shared secret of the HTTP user endpoint (empty disables it). */
    public static final String PROP_SECRET = "plugin.imgw.secret";
    /** Openfire system property: seconds a copied message is remembered for de-duplication. */
    public static final String PROP_DEDUP_SECONDS = "plugin.imgw.copy.dedup.seconds";
    /** Openfire system property: most (from, to, id) triples remembered at once. */
    public static final String PROP_DEDUP_MAX = "plugin.imgw.copy.dedup.max";
    /** Openfire system property: turns message copies off (true by default). */
    public static final String PROP_COPY_ENABLED = "plugin.imgw.copy.enabled";
    /**
     * Openfire system property: a create of an existing account the companion did not make
     * adopts it instead of answering conflict (false by default; never for administrators).
     */
    public static final String PROP_ADOPT_EXISTING = "plugin.imgw.adopt.existing";

    public static final int DEFAULT_DEDUP_SECONDS = 120;
    public static final int DEFAULT_DEDUP_MAX = 100000;

    private Companion() {
    }
}
