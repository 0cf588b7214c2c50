package org.xmpp.packet;

import java.io.Serializable;
import java.util.Locale;

/**
 * Compile-time and unit-test stand-in for Tinder's JID. Only the members the plugin uses exist.
 * Node and domain are lower-cased, which is what nodeprep/domainprep do to the ASCII names the
 * tests use; the real class applies full stringprep. Never packaged into the plugin.
 */
public class JID implements Comparable<JID>, Serializable {
    private static final long serialVersionUID = 1L;

    private final String node;
    private final String domain;
    private final String resource;

    public JID(String jid) {
        if (jid == null || jid.isEmpty()) {
            throw new IllegalArgumentException("empty JID");
        }
        int slash = jid.indexOf('/');
        String bare = slash < 0 ? jid : jid.substring(0, slash);
        String res = slash < 0 ? null : jid.substring(slash + 1);
        int at = bare.indexOf('@');
        String n = at < 0 ? null : bare.substring(0, at);
        String d = at < 0 ? bare : bare.substring(at + 1);
        this.node = prepNode(n);
        this.domain = prepDomain(d);
        this.resource = prepResource(res);
    }

    public JID(String node, String domain, String resource) {
        this.node = prepNode(node);
        this.domain = prepDomain(domain);
        this.resource = prepResource(resource);
    }

    private static String prepNode(String n) {
        if (n == null) {
            return null;
        }
        if (n.isEmpty() || n.indexOf('@') >= 0 || n.indexOf('/') >= 0) {
            throw new IllegalArgumentException("bad node: " + n);
        }
        return n.toLowerCase(Locale.ROOT);
    }

    private static String prepDomain(String d) {
        if (d == null || d.isEmpty() || d.indexOf('@') >= 0 || d.indexOf('/') >= 0) {
            throw new IllegalArgumentException("bad domain: " + d);
        }
        return d.toLowerCase(Locale.ROOT);
    }

    private static String prepResource(String r) {
        if (r == null) {
            return null;
        }
        if (r.isEmpty()) {
            throw new IllegalArgumentException("empty resource");
        }
        return r;
    }

    public String getNode() {
        return node;
    }

    public String getDomain() {
        return domain;
    }

    public String getResource() {
        return resource;
    }

    public String toBareJID() {
        return node == null ? domain : node + "@" + domain;
    }

    public JID asBareJID() {
        return new JID(node, domain, null);
    }

    public String toFullJID() {
        return resource == null ? toBareJID() : toBareJID() + "/" + resource;
    }

    @Override
    public String toString() {
        return toFullJID();
    }

    @Override
    public int hashCode() {
        return toString().hashCode();
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof JID && toString().equals(o.toString());
    }

    @Override
    public int compareTo(JID o) {
        return toString().compareTo(o.toString());
    }
}
