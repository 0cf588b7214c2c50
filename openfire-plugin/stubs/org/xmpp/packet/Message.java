package org.xmpp.packet;

import org.dom4j.Element;

/** Stand-in for Tinder's Message. Never packaged into the plugin. */
public class Message extends Packet {
    public enum Type { normal, chat, groupchat, headline, error }

    public Message() {
        this.element = docFactory.createDocument().addElement("message");
    }

    public Message(Element element) {
        super(element);
    }

    public Message(Element element, boolean skipValidation) {
        super(element, skipValidation);
    }

    public Type getType() {
        String t = element.attributeValue("type");
        if (t == null) {
            return Type.normal;
        }
        try {
            return Type.valueOf(t);
        } catch (IllegalArgumentException e) {
            return null;
        }
    }

    public void setType(Type type) {
        element.addAttribute("type", type == null ? null : type.name());
    }

    public String getBody() {
        return element.elementText("body");
    }

    public void setBody(String body) {
        Element b = element.element("body");
        if (b == null) {
            b = element.addElement("body");
        }
        b.setText(body);
    }

    public String getThread() {
        return element.elementText("thread");
    }

    public Element getChildElement(String name, String namespace) {
        for (Object o : element.elements(name)) {
            Element e = (Element) o;
            if (namespace.equals(e.getNamespaceURI())) {
                return e;
            }
        }
        return null;
    }

    public Element addChildElement(String name, String namespace) {
        return element.addElement(name, namespace);
    }

    @Override
    public Message createCopy() {
        return new Message(element.createCopy(), true);
    }
}
