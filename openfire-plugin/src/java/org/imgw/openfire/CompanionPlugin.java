package org.imgw.openfire;

import java.io.File;
import java.util.UUID;
import java.util.concurrent.atomic.AtomicLong;
import org.jivesoftware.admin.AuthCheckFilter;
import org.jivesoftware.openfire.PacketRouter;
import org.jivesoftware.openfire.XMPPServer;
import org.jivesoftware.openfire.container.Plugin;
import org.jivesoftware.openfire.container.PluginManager;
import org.jivesoftware.openfire.interceptor.InterceptorManager;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import org.xmpp.packet.Packet;

/**
 * The imgw companion inside Openfire (docs/companion-protocol.md sections 1-5). Everything it
 * registers with Openfire in {@link #initializePlugin} it removes in {@link #destroyPlugin}; all
 * state lives in this instance.
 */
public final class CompanionPlugin implements Plugin {
    private static final Logger Log = LoggerFactory.getLogger(CompanionPlugin.class);

    /** Servlet path of the HTTP user endpoint, relative to /plugins/PLUGINNAME (see web.xml). */
    static final String API_PATH = "/users";

    private volatile State runtime;

    /** What one initialized instance holds; replaced as a whole so servlets see a consistent view. */
    static final class State {
        final CompanionStats stats = new CompanionStats();
        final OpenfireSettings settings = new OpenfireSettings();
        final String apiExclude;
        final String pluginName;
        UserApi api;
        CompanionIQHandler iqHandler;
        CompanionInterceptor interceptor;
        boolean featureAdded;
        boolean excludeAdded;

        State(String pluginName) {
            this.pluginName = pluginName;
            this.apiExclude = pluginName + API_PATH;
        }
    }

    @Override
    public void initializePlugin(PluginManager manager, File pluginDirectory) {
        final XMPPServer server = XMPPServer.getInstance();
        State rt = new State(pluginDirectory.getName());
        OpenfireUserStore users = new OpenfireUserStore(server.getUserManager());
        RegistrationService registration = new RegistrationService(users, rt.settings, rt.stats);
        rt.api = new UserApi(rt.settings, registration);
        CompanionIq iq = new CompanionIq(rt.settings, registration, users,
                new OpenfirePresencePublisher(server.getRosterManager(), rt.settings), rt.stats);
        final PacketRouter router = server.getPacketRouter();
        final String idPrefix = "copy-" + UUID.randomUUID().toString().substring(0, 8) + "-";
        final AtomicLong sequence = new AtomicLong();
        MessageFlow flow = new MessageFlow(rt.settings, users, new PacketSink() {
            @Override
            public void route(Packet packet) {
                router.route(packet);
            }
        }, new RecentKeys(rt.settings.dedupSeconds() * 1000L, rt.settings.dedupMax()), new MessageFlow.Clock() {
            @Override
            public long now() {
                return System.currentTimeMillis();
            }
        }, new MessageFlow.IdSource() {
            @Override
            public String next() {
                return idPrefix + sequence.incrementAndGet();
            }
        }, rt.stats);

        try {
            rt.iqHandler = new CompanionIQHandler(iq);
            server.getIQRouter().addHandler(rt.iqHandler);
            server.getIQDiscoInfoHandler().addServerFeature(Companion.NS);
            rt.featureAdded = true;
            rt.interceptor = new CompanionInterceptor(flow);
            InterceptorManager.getInstance().addInterceptor(rt.interceptor);
            AuthCheckFilter.addExclude(rt.apiExclude);
            rt.excludeAdded = true;
        } catch (RuntimeException e) {
            Log.error("imgw companion: start-up failed, undoing", e);
            undo(rt);
            throw e;
        }
        runtime = rt;
        Log.info("imgw companion started: server {}, gateway {}, HTTP endpoint /plugins/{}{} {}",
                rt.settings.serverDomain(), rt.settings.gatewayDomain(), rt.pluginName, API_PATH,
                rt.settings.secret().isEmpty() ? "disabled (no " + Companion.PROP_SECRET + ")" : "enabled");
    }

    @Override
    public void destroyPlugin() {
        State rt = runtime;
        runtime = null;
        if (rt != null) {
            undo(rt);
        }
        Log.info("imgw companion stopped");
    }

    /** Removes whatever the runtime registered; each step on its own so one failure skips nothing. */
    private static void undo(State rt) {
        if (rt.excludeAdded) {
            try {
                AuthCheckFilter.removeExclude(rt.apiExclude);
            } catch (RuntimeException e) {
                Log.warn("imgw companion: removing the admin exclude failed", e);
            }
            rt.excludeAdded = false;
        }
        if (rt.interceptor != null) {
            try {
                InterceptorManager.getInstance().removeInterceptor(rt.interceptor);
            } catch (RuntimeException e) {
                Log.warn("imgw companion: removing the interceptor failed", e);
            }
            rt.interceptor = null;
        }
        XMPPServer server = XMPPServer.getInstance();
        if (rt.featureAdded) {
            try {
                server.getIQDiscoInfoHandler().removeServerFeature(Companion.NS);
            } catch (RuntimeException e) {
                Log.warn("imgw companion: removing the disco feature failed", e);
            }
            rt.featureAdded = false;
        }
        if (rt.iqHandler != null) {
            try {
                server.getIQRouter().removeHandler(rt.iqHandler);
            } catch (RuntimeException e) {
                Log.warn("imgw companion: removing the IQ handler failed", e);
            }
            rt.iqHandler = null;
        }
    }

    /** The running instance's state, or null when not initialized. */
    State runtime() {
        return runtime;
    }

    /** True when a component session for the gateway's domain exists on this node. */
    boolean gatewayConnected() {
        State rt = runtime;
        if (rt == null) {
            return false;
        }
        try {
            return XMPPServer.getInstance().getSessionManager().getComponentSession(rt.settings.gatewayDomain()) != null;
        } catch (RuntimeException e) {
            return false;
        }
    }

    /** The loaded instance of this plugin, found through Openfire's plugin manager, or null. */
    static CompanionPlugin find() {
        for (Plugin p : XMPPServer.getInstance().getPluginManager().getPlugins()) {
            if (p instanceof CompanionPlugin) {
                return (CompanionPlugin) p;
            }
        }
        return null;
    }
}
