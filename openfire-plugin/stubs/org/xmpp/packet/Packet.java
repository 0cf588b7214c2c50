package org.xmpp.packet;

import org.dom4j.DocumentFactory;
import org.dom4j.Element;

/**
 * Stand-in for Tinder's Packet: a thin wrapper around a dom4j element, like the real one.
 * Never packaged into the plugin.
 */
public abstract class Packet {
    protected static final DocumentFactory docFactory = DocumentFactory.getInstance();
    protected Element element;

    public Packet(Element element) {
        this(element, false);
    }

    public Packet(Element element, boolean skipValidation) {
        this.element = element;
        if (!skipValidation) {
            // The real class validates the addresses by parsing them; so does this one.
            getTo();
            getFrom();
        }
    }

    protected Packet() {
    }

    public String getID() {
        return element.attributeValue("id");
    }

    public void setID(String id) {
        setAttr("id", id);
    }

    public JID getTo() {
        String to = element.attributeValue("to");
        return to == null ? null : new JID(to);
    }

    public void setTo(String to) {
        setAttr("to", to);
    }

    public void setTo(JID to) {
        setAttr("to", to == null ? null : to.toString());
    }

    public JID getFrom() {
        String from = element.attributeValue("from");
        return from == null ? null : new JID(from);
    }

    public void setFrom(String from) {
        setAttr("from", from);
    }

    public void setFrom(JID from) {
        setAttr("from", from == null ? null : from.toString());
    }

    public PacketError getError() {
        Element e = element.element("error");
        return e == null ? null : new PacketError(e);
    }

    public void setError(PacketError error) {
        Element old = element.element("error");
        if (old != null) {
            element.remove(old);
        }
        element.addAttribute("type", "error");
        element.add(error.getElement());
    }

    public void setError(PacketError.Condition condition) {
        setError(new PacketError(condition));
    }

    public abstract Packet createCopy();

    public Element getElement() {
        return element;
    }

    public String toXML() {
        return element.asXML();
    }

    @Override
    public String toString() {
        return toXML();
    }

    private void setAttr(String name, String value) {
        if (value == null) {
            if (element.attribute(name) != null) {
                element.remove(element.attribute(name));
            }
        } else {
            element.addAttribute(name, value);
        }
    }
}
