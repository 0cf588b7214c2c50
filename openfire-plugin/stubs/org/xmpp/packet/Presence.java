package org.xmpp.packet;

import org.dom4j.Element;

/** Stand-in for Tinder's Presence. Never packaged into the plugin. */
public class Presence extends Packet {
    public enum Type { unavailable, subscribe, subscribed, unsubscribe, unsubscribed, probe, error }

    public Presence() {
        this.element = docFactory.createDocument().addElement("presence");
    }

    public Presence(Type type) {
        this();
        setType(type);
    }

    public Presence(Element element) {
        super(element);
    }

    public Presence(Element element, boolean skipValidation) {
        super(element, skipValidation);
    }

    public boolean isAvailable() {
        return getType() == null;
    }

    public int getPriority() {
        String p = element.elementTextTrim("priority");
        if (p == null) {
            return 0;
        }
        try {
            return Integer.parseInt(p);
        } catch (NumberFormatException e) {
            return 0;
        }
    }

    public Type getType() {
        String t = element.attributeValue("type");
        return t == null ? null : Type.valueOf(t);
    }

    public void setType(Type type) {
        element.addAttribute("type", type == null ? null : type.name());
    }

    @Override
    public Presence createCopy() {
        return new Presence(element.createCopy(), true);
    }
}
