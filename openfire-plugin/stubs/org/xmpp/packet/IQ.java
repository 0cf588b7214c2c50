package org.xmpp.packet;

import java.util.Iterator;
import org.dom4j.Element;

/** Stand-in for Tinder's IQ. Never packaged into the plugin. */
public class IQ extends Packet {
    public enum Type { get, set, result, error }

    private static int sequence;

    public IQ() {
        this(Type.get);
    }

    public IQ(Type type) {
        this(type, "stub" + (++sequence));
    }

    public IQ(Type type, String id) {
        this.element = docFactory.createDocument().addElement("iq");
        setType(type);
        setID(id);
    }

    public IQ(Element element) {
        super(element);
    }

    public IQ(Element element, boolean skipValidation) {
        super(element, skipValidation);
    }

    public Type getType() {
        String t = element.attributeValue("type");
        return t == null ? null : Type.valueOf(t);
    }

    public void setType(Type type) {
        element.addAttribute("type", type == null ? null : type.name());
    }

    public boolean isRequest() {
        return getType() == Type.get || getType() == Type.set;
    }

    public boolean isResponse() {
        return !isRequest();
    }

    public Element getChildElement() {
        for (Iterator<?> i = element.elementIterator(); i.hasNext();) {
            Element e = (Element) i.next();
            if (!"error".equals(e.getName())) {
                return e;
            }
        }
        return null;
    }

    public void setChildElement(Element child) {
        Element old = getChildElement();
        if (old != null) {
            element.remove(old);
        }
        element.add(child);
    }

    public Element setChildElement(String name, String namespace) {
        Element child = docFactory.createElement(name, namespace);
        setChildElement(child);
        return child;
    }

    @Override
    public IQ createCopy() {
        return new IQ(element.createCopy(), true);
    }

    public static IQ createResultIQ(IQ iq) {
        IQ result = new IQ(Type.result, iq.getID());
        result.setFrom(iq.getTo());
        result.setTo(iq.getFrom());
        return result;
    }
}
