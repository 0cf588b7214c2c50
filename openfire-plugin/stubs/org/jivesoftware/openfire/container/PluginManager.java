package org.jivesoftware.openfire.container;

import java.util.Collection;

/** Compile-time stand-in for Openfire's PluginManager. Never packaged. */
public class PluginManager {
    private PluginManager() { }
    public Collection<Plugin> getPlugins() { throw new UnsupportedOperationException("compile-time stand-in"); }
}
