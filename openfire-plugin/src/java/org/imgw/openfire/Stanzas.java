package org.imgw.openfire;

import java.util.Iterator;
import org.dom4j.Attribute;
import org.dom4j.DocumentFactory;
import org.dom4j.Element;
import org.dom4j.Node;
import org.dom4j.QName;
import org.xmpp.packet.JID;

/** Small stanza helpers that only need dom4j and Tinder's packet classes. */
public final class Stanzas {
    private Stanzas() {
    }

    /** True when the address is exactly the bare domain (no node, no resource). */
    public static boolean isExactly(JID jid, String domain) {
        return jid != null && domain != null && jid.getNode() == null && jid.getResource() == null
                && jid.getDomain().equalsIgnoreCase(domain);
    }

    /** True when the address belongs to the domain (the domain itself or any JID at it). */
    public static boolean isAt(JID jid, String domain) {
        return jid != null && domain != null && jid.getDomain().equalsIgnoreCase(domain);
    }

    /** True for stanza namespaces that all mean "the stream's content namespace". */
    static boolean isStanzaNamespace(String uri) {
        return uri == null || uri.isEmpty() || Companion.NS_CLIENT.equals(uri) || "jabber:server".equals(uri)
                || "jabber:component:accept".equals(uri);
    }

    /**
     * Deep-copies a stanza into the jabber:client namespace, as XEP-0297 wants for a forwarded
     * stanza. Elements in no namespace or in another stanza namespace (server-to-server,
     * component) move to jabber:client with it; extension elements keep their own namespace.
     * Openfire builds many stanzas internally with no namespace at all, and copying those
     * verbatim under a jabber:client parent would put their body in no namespace.
     *
     * @param stanza the element to copy; not modified
     * @return a detached copy owned by the caller
     */
    public static Element toClientNamespace(Element stanza) {
        DocumentFactory factory = DocumentFactory.getInstance();
        QName name = isStanzaNamespace(stanza.getNamespaceURI())
                ? factory.createQName(stanza.getName(), factory.createNamespace("", Companion.NS_CLIENT))
                : stanza.getQName();
        Element copy = factory.createElement(name);
        copyContent(stanza, copy, factory);
        return copy;
    }

    private static void copyContent(Element from, Element to, DocumentFactory factory) {
        for (Iterator<?> i = from.attributeIterator(); i.hasNext();) {
            Attribute a = (Attribute) i.next();
            to.addAttribute(a.getQName(), a.getValue());
        }
        for (Iterator<?> i = from.nodeIterator(); i.hasNext();) {
            Node n = (Node) i.next();
            if (n instanceof Element) {
                Element child = (Element) n;
                Element childCopy;
                if (isStanzaNamespace(child.getNamespaceURI()) && isStanzaNamespace(to.getNamespaceURI())) {
                    childCopy = to.addElement(child.getName(), Companion.NS_CLIENT);
                } else {
                    childCopy = to.addElement(child.getQName());
                }
                copyContent(child, childCopy, factory);
            } else if (n.getNodeType() == Node.TEXT_NODE || n.getNodeType() == Node.CDATA_SECTION_NODE) {
                to.addText(n.getText());
            }
        }
    }

    /** The first child with this local name and namespace, or null. */
    public static Element child(Element parent, String name, String namespace) {
        if (parent == null) {
            return null;
        }
        for (Iterator<?> i = parent.elementIterator(); i.hasNext();) {
            Element e = (Element) i.next();
            if (name.equals(e.getName()) && namespace.equals(e.getNamespaceURI())) {
                return e;
            }
        }
        return null;
    }

    /** The first child with this local name in a stanza namespace (body, thread...), or null. */
    public static Element stanzaChild(Element parent, String name) {
        for (Iterator<?> i = parent.elementIterator(); i.hasNext();) {
            Element e = (Element) i.next();
            if (name.equals(e.getName()) && isStanzaNamespace(e.getNamespaceURI())) {
                return e;
            }
        }
        return null;
    }
}
