package org.jivesoftware.openfire.container;

/** Stand-in for Openfire's BasicModule (only its constructor and name). Never packaged. */
public class BasicModule {
    private final String name;

    public BasicModule(String moduleName) { this.name = moduleName; }
    public String getName() { return name; }
}
