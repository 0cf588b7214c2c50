package org.jivesoftware.openfire.container;

import java.io.File;

/** Compile-time stand-in for Openfire's Plugin interface. Never packaged. */
public interface Plugin {
    void initializePlugin(PluginManager manager, File pluginDirectory);
    void destroyPlugin();
}
