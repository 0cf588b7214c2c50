package org.xmpp.packet;

import java.util.Iterator;
import java.util.Locale;
import org.dom4j.DocumentFactory;
import org.dom4j.Element;

/** Stand-in for Tinder's PacketError. Never packaged into the plugin. */
public class PacketError {
    private static final String ERROR_NAMESPACE = "urn:ietf:params:xml:ns:xmpp-stanzas";

    public enum Type {
        cancel, continue_processing, modify, auth, wait;

        public String toXMPP() {
            return this == continue_processing ? "continue" : name();
        }

        public static Type fromXMPP(String type) {
            return "continue".equals(type) ? continue_processing : valueOf(type);
        }
    }

    public enum Condition {
        bad_request(Type.modify), conflict(Type.cancel), feature_not_implemented(Type.cancel),
        forbidden(Type.auth), gone(Type.modify), internal_server_error(Type.wait),
        item_not_found(Type.cancel), jid_malformed(Type.modify), not_acceptable(Type.modify),
        not_allowed(Type.cancel), not_authorized(Type.auth), payment_required(Type.auth),
        recipient_unavailable(Type.wait), redirect(Type.modify), registration_required(Type.auth),
        remote_server_not_found(Type.cancel), remote_server_timeout(Type.wait),
        resource_constraint(Type.wait), service_unavailable(Type.cancel),
        subscription_required(Type.auth), undefined_condition(Type.wait),
        unexpected_request(Type.wait);

        private final Type defaultType;

        Condition(Type defaultType) {
            this.defaultType = defaultType;
        }

        public Type getDefaultType() {
            return defaultType;
        }

        public String toXMPP() {
            return name().replace('_', '-');
        }

        public static Condition fromXMPP(String condition) {
            return valueOf(condition.replace('-', '_').toLowerCase(Locale.ROOT));
        }
    }

    private final Element element;

    public PacketError(Condition condition) {
        this(condition, condition.getDefaultType());
    }

    public PacketError(Condition condition, Type type) {
        element = DocumentFactory.getInstance().createElement("error");
        element.addAttribute("type", type.toXMPP());
        element.addElement(condition.toXMPP(), ERROR_NAMESPACE);
    }

    public PacketError(Element element) {
        this.element = element;
    }

    public Type getType() {
        String t = element.attributeValue("type");
        return t == null ? null : Type.fromXMPP(t);
    }

    public Condition getCondition() {
        for (Iterator<?> i = element.elementIterator(); i.hasNext();) {
            Element e = (Element) i.next();
            if (ERROR_NAMESPACE.equals(e.getNamespaceURI()) && !"text".equals(e.getName())) {
                return Condition.fromXMPP(e.getName());
            }
        }
        return null;
    }

    public Element getElement() {
        return element;
    }

    public String toXML() {
        return element.asXML();
    }
}
