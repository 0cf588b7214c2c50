package org.imgw.openfire;

import java.util.Collections;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.Locale;
import java.util.Map;
import java.util.regex.Pattern;
import org.dom4j.Element;

/**
 * One registration request of section 1 (from the IQ's {@code <user/>} element or the HTTP
 * endpoint's JSON), validated. Absent fields are null. In {@link #properties}, keys are the
 * names as sent (without the "imgw." prefix) and a null value means "remove" (update only).
 */
public final class UserRequest {
    public enum Action { CREATE, UPDATE, DELETE }

    /** Property names: short, and safe in Openfire's ofUserProp.name (100 chars with the prefix). */
    private static final Pattern PROPERTY_NAME = Pattern.compile("[A-Za-z0-9._-]{1,64}");
    static final int MAX_FIELD = 100;
    static final int MAX_PASSWORD = 1024;
    static final int MAX_PROPERTY_VALUE = 4000;

    public final Action action;
    public final String username;
    public final String password;
    public final String name;
    public final String email;
    public final Map<String, String> properties;

    /**
     * Validates the fields of a request.
     *
     * @param action "create", "update" or "delete"
     * @throws CompanionError bad-request for an unknown action or a malformed field,
     *         not-acceptable for a missing or bad username
     */
    public UserRequest(String action, String username, String password, String name, String email,
            Map<String, String> properties) throws CompanionError {
        this.action = parseAction(action);
        this.username = Usernames.normalize(username);
        this.password = checkLength("password", emptyToNull(password), MAX_PASSWORD);
        if (this.password == null && password != null && this.action == Action.UPDATE) {
            throw CompanionError.badRequest("empty password");
        }
        this.name = checkLength("name", name, MAX_FIELD);
        this.email = checkLength("email", email, MAX_FIELD);
        Map<String, String> props = new LinkedHashMap<String, String>();
        if (properties != null) {
            for (Map.Entry<String, String> p : properties.entrySet()) {
                if (p.getKey() == null || !PROPERTY_NAME.matcher(p.getKey()).matches()) {
                    throw CompanionError.badRequest("property names must match [A-Za-z0-9._-]{1,64}");
                }
                String value = checkLength("property", p.getValue(), MAX_PROPERTY_VALUE);
                if (value == null && this.action != Action.UPDATE) {
                    continue;
                }
                props.put(p.getKey(), value);
            }
        }
        this.properties = Collections.unmodifiableMap(props);
    }

    /**
     * Reads {@code <user xmlns='urn:imgw:companion:0' action='…'>}. An empty {@code <property/>}
     * in an update removes that property.
     */
    public static UserRequest fromElement(Element user) throws CompanionError {
        Map<String, String> props = new LinkedHashMap<String, String>();
        for (Iterator<?> i = user.elementIterator(); i.hasNext();) {
            Element e = (Element) i.next();
            if ("property".equals(e.getName())) {
                String key = e.attributeValue("name");
                if (key == null) {
                    throw CompanionError.badRequest("property without a name");
                }
                String value = e.getText();
                props.put(key, value == null || value.isEmpty() ? null : value);
            }
        }
        // The password is taken verbatim: spaces may be part of it.
        return new UserRequest(user.attributeValue("action"), text(user, "username", true),
                text(user, "password", false), text(user, "name", true), text(user, "email", true), props);
    }

    private static String text(Element parent, String name, boolean trim) {
        Element e = parent.element(name);
        if (e == null) {
            for (Iterator<?> i = parent.elementIterator(); i.hasNext();) {
                Element c = (Element) i.next();
                if (name.equals(c.getName())) {
                    e = c;
                    break;
                }
            }
        }
        if (e == null) {
            return null;
        }
        return trim ? e.getTextTrim() : e.getText();
    }

    static Action parseAction(String action) throws CompanionError {
        if (action == null) {
            throw CompanionError.badRequest("missing action");
        }
        String a = action.toLowerCase(Locale.ROOT);
        if ("create".equals(a)) {
            return Action.CREATE;
        }
        if ("update".equals(a)) {
            return Action.UPDATE;
        }
        if ("delete".equals(a)) {
            return Action.DELETE;
        }
        throw CompanionError.badRequest("unknown action: " + action);
    }

    private static String emptyToNull(String s) {
        return s == null || s.isEmpty() ? null : s;
    }

    private static String checkLength(String what, String value, int max) throws CompanionError {
        if (value != null && value.length() > max) {
            throw CompanionError.badRequest(what + " longer than " + max + " characters");
        }
        return value;
    }
}
