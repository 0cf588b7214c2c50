package org.imgw.openfire;

import java.io.File;
import java.sql.Connection;
import java.sql.SQLException;
import java.util.UUID;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.ThreadFactory;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import org.jivesoftware.admin.AuthCheckFilter;
import org.jivesoftware.database.DbConnectionManager;
import org.jivesoftware.openfire.OfflineMessageStrategy;
import org.jivesoftware.openfire.PacketRouter;
import org.jivesoftware.openfire.XMPPServer;
import org.jivesoftware.openfire.container.Plugin;
import org.jivesoftware.openfire.container.PluginManager;
import org.jivesoftware.openfire.interceptor.InterceptorManager;
import org.jivesoftware.openfire.user.PresenceEventDispatcher;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import org.xmpp.packet.Packet;

/**
 * The imgw companion inside Openfire (docs/companion-protocol.md, versions 0 and 1). Everything it
 * registers with Openfire in {@link #initializePlugin} it removes in {@link #destroyPlugin}; all
 * state lives in this instance, including the timer thread that ends leases and resends copies.
 */
public final class CompanionPlugin implements Plugin {
    private static final Logger Log = LoggerFactory.getLogger(CompanionPlugin.class);

    /** Servlet path of the HTTP user endpoint, relative to /plugins/PLUGINNAME (see web.xml). */
    static final String API_PATH = "/users";
    /** How often the timer ends leases, finishes resets, moves copies and resends them. */
    static final long TICK_MILLIS = 200;

    private volatile State runtime;

    /** What one initialized instance holds; replaced as a whole so servlets see a consistent view. */
    static final class State {
        final CompanionStats stats = new CompanionStats();
        final OpenfireSettings settings = new OpenfireSettings();
        final String apiExclude;
        final String pluginName;
        UserApi api;
        WebUsers web;
        CopyLedger ledger;
        CompanionIQHandler iqHandler;
        CompanionIQHandler iqHandler1;
        CompanionInterceptor interceptor;
        CompanionPresenceListener presenceListener;
        LoginRace loginRace;
        LoginRaceListener offlineListener;
        ScheduledExecutorService timer;
        boolean featureAdded;
        boolean feature1Added;
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
        final PacketRouter router = server.getPacketRouter();
        PacketSink sink = new PacketSink() {
            @Override
            public void route(Packet packet) {
                router.route(packet);
            }
        };
        MessageFlow.Clock clock = new MessageFlow.Clock() {
            @Override
            public long now() {
                return System.currentTimeMillis();
            }
        };
        rt.web = new WebUsers(new OpenfirePresencePublisher(server.getRosterManager(), rt.settings), rt.stats);
        final WebUsers web = rt.web;
        // Section 4 (version-0 gateways) makes users web-online too, held until they go off.
        PresencePublisher v0 = new PresencePublisher() {
            @Override
            public void publish(String username, boolean available) {
                web.v0(username, available);
            }
        };
        CompanionIq iq = new CompanionIq(rt.settings, registration, users, v0, rt.stats);
        rt.ledger = new CopyLedger(rt.settings, new JdbcCopyStore(new JdbcCopyStore.ConnectionSource() {
            @Override
            public Connection get() throws SQLException {
                return DbConnectionManager.getConnection();
            }
        }), sink, rt.stats);
        rt.ledger.start(clock.now(), rt.settings.lastSeq());
        CompanionIq1 iq1 = new CompanionIq1(rt.settings, users, rt.web, rt.ledger, clock, rt.stats);
        WebPresence webPresence = new WebPresence(rt.settings, rt.web, new OpenfireRosters(server.getRosterManager()),
                sink, rt.stats);
        rt.loginRace = new LoginRace(sink, rt.stats, rt.settings.serverDomain());
        final String idPrefix = "copy-" + UUID.randomUUID().toString().substring(0, 8) + "-";
        final AtomicLong sequence = new AtomicLong();
        MessageFlow flow = new MessageFlow(rt.settings, users, sink,
                new RecentKeys(rt.settings.dedupSeconds() * 1000L, rt.settings.dedupMax()), clock,
                new MessageFlow.IdSource() {
                    @Override
                    public String next() {
                        return idPrefix + sequence.incrementAndGet();
                    }
                }, rt.stats, rt.web, new OpenfireSessions(server.getSessionManager()), rt.ledger,
                new RecentKeys(rt.settings.sendAsDedupSeconds() * 1000L, rt.settings.sendAsDedupMax()), webPresence,
                rt.loginRace);

        try {
            rt.iqHandler = new CompanionIQHandler("user", Companion.NS, new CompanionIQHandler.Logic() {
                @Override
                public org.xmpp.packet.IQ handle(org.xmpp.packet.IQ packet) {
                    return iq.handle(packet);
                }
            });
            server.getIQRouter().addHandler(rt.iqHandler);
            rt.iqHandler1 = new CompanionIQHandler("gateway", Companion.NS1, new CompanionIQHandler.Logic() {
                @Override
                public org.xmpp.packet.IQ handle(org.xmpp.packet.IQ packet) {
                    return iq1.handle(packet);
                }
            });
            server.getIQRouter().addHandler(rt.iqHandler1);
            server.getIQDiscoInfoHandler().addServerFeature(Companion.NS);
            rt.featureAdded = true;
            server.getIQDiscoInfoHandler().addServerFeature(Companion.NS1);
            rt.feature1Added = true;
            rt.offlineListener = new LoginRaceListener(rt.loginRace, clock);
            OfflineMessageStrategy.addListener(rt.offlineListener);
            rt.interceptor = new CompanionInterceptor(flow, rt.loginRace, clock);
            InterceptorManager.getInstance().addInterceptor(rt.interceptor);
            rt.presenceListener = new CompanionPresenceListener(webPresence);
            PresenceEventDispatcher.addListener(rt.presenceListener);
            AuthCheckFilter.addExclude(rt.apiExclude);
            rt.excludeAdded = true;
            rt.timer = Executors.newSingleThreadScheduledExecutor(new ThreadFactory() {
                @Override
                public Thread newThread(Runnable r) {
                    Thread t = new Thread(r, "imgw-companion-timer");
                    t.setDaemon(true);
                    return t;
                }
            });
            final State state = rt;
            rt.timer.scheduleWithFixedDelay(new Runnable() {
                @Override
                public void run() {
                    tick(state);
                }
            }, TICK_MILLIS, TICK_MILLIS, TimeUnit.MILLISECONDS);
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

    /** One timer run; a throwable would cancel the schedule, so none escapes. */
    static void tick(State rt) {
        try {
            long now = System.currentTimeMillis();
            rt.web.expire(now);
            rt.ledger.tick(now, rt.web.anyInstance());
            rt.loginRace.tick(now);
        } catch (Throwable t) {
            Log.error("imgw companion: timer run failed", t);
        }
    }

    /** Removes whatever the runtime registered; each step on its own so one failure skips nothing. */
    private static void undo(State rt) {
        if (rt.timer != null) {
            rt.timer.shutdownNow();
            try {
                rt.timer.awaitTermination(5, TimeUnit.SECONDS);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
            rt.timer = null;
        }
        if (rt.presenceListener != null) {
            try {
                PresenceEventDispatcher.removeListener(rt.presenceListener);
            } catch (RuntimeException e) {
                Log.warn("imgw companion: removing the presence listener failed", e);
            }
            rt.presenceListener = null;
        }
        if (rt.offlineListener != null) {
            try {
                OfflineMessageStrategy.removeListener(rt.offlineListener);
            } catch (RuntimeException e) {
                Log.warn("imgw companion: removing the offline message listener failed", e);
            }
            rt.offlineListener = null;
        }
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
        if (rt.feature1Added) {
            try {
                server.getIQDiscoInfoHandler().removeServerFeature(Companion.NS1);
            } catch (RuntimeException e) {
                Log.warn("imgw companion: removing the disco feature failed", e);
            }
            rt.feature1Added = false;
        }
        if (rt.iqHandler != null) {
            try {
                server.getIQRouter().removeHandler(rt.iqHandler);
            } catch (RuntimeException e) {
                Log.warn("imgw companion: removing the IQ handler failed", e);
            }
            rt.iqHandler = null;
        }
        if (rt.iqHandler1 != null) {
            try {
                server.getIQRouter().removeHandler(rt.iqHandler1);
            } catch (RuntimeException e) {
                Log.warn("imgw companion: removing the IQ handler failed", e);
            }
            rt.iqHandler1 = null;
        }
        if (rt.ledger != null) {
            try {
                // The next start numbers from here on even if the clock went back.
                rt.settings.rememberLastSeq(rt.ledger.lastSeq());
            } catch (RuntimeException e) {
                Log.warn("imgw companion: remembering the last sequence number failed", e);
            }
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
