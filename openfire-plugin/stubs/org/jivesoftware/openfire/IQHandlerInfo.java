package org.jivesoftware.openfire;

/** Stand-in for Openfire's IQHandlerInfo (a plain value class, so it works in tests). Never packaged. */
public class IQHandlerInfo {
    private final String name;
    private final String namespace;

    public IQHandlerInfo(String name, String namespace) {
        this.name = name;
        this.namespace = namespace;
    }

    public String getName() { return name; }
    public String getNamespace() { return namespace; }
}
