package org.imgw.openfire;

import java.util.concurrent.atomic.AtomicLong;

/** Counters shown on the admin page. One instance per plugin instance; reset when it is reloaded. */
public final class CompanionStats {
    /** Successful create/update/delete requests, IQ and HTTP. */
    public final AtomicLong registrations = new AtomicLong();
    /** Registration requests answered with an error. */
    public final AtomicLong registrationErrors = new AtomicLong();
    /** Messages copied to the gateway. */
    public final AtomicLong copies = new AtomicLong();
    /** Copies skipped because the same (from, to, id) was copied recently. */
    public final AtomicLong duplicates = new AtomicLong();
    /** Messages routed as a user for the gateway. */
    public final AtomicLong sentAs = new AtomicLong();
    /** Send-as requests refused. */
    public final AtomicLong sendAsRefused = new AtomicLong();
    /** Web presence requests of section 4 (version-0 gateways). */
    public final AtomicLong presenceUpdates = new AtomicLong();

    /** Gateway instances registered (section 7). */
    public final AtomicLong instancesRegistered = new AtomicLong();
    /** Gateway instances ended: replaced, lease 0 or lease run out. */
    public final AtomicLong instancesEnded = new AtomicLong();
    /** Of those, instances whose lease ran out. */
    public final AtomicLong leasesExpired = new AtomicLong();
    /** Status answers that asked an instance for its full list. */
    public final AtomicLong resyncs = new AtomicLong();
    /** Users listed in {@code on} without an account (never web-online). */
    public final AtomicLong webUnknownUsers = new AtomicLong();
    /** Users ignored because an instance listed too many. */
    public final AtomicLong webUsersRefused = new AtomicLong();
    /** Web-online transitions broadcast to subscribers. */
    public final AtomicLong webPresenceBroadcasts = new AtomicLong();
    /** Web presence sent to one contact (a probe, a contact coming online, a new subscription). */
    public final AtomicLong webPresenceDirected = new AtomicLong();
    /** Messages to web-online users kept out of offline storage (delivered to the gateway only). */
    public final AtomicLong offlineAvoided = new AtomicLong();

    /** Copies acknowledged by a gateway (section 9). */
    public final AtomicLong copiesAcked = new AtomicLong();
    /** Copies sent again. */
    public final AtomicLong copiesResent = new AtomicLong();
    /** Copies moved from memory to the database. */
    public final AtomicLong copiesSpilled = new AtomicLong();
    /** Copies read back from the database. */
    public final AtomicLong copiesLoaded = new AtomicLong();
    /** Unacknowledged copies given up because memory was full and the database failed. */
    public final AtomicLong copiesDropped = new AtomicLong();
    /** Send-as requests not routed again because the same (sender, id) was routed recently (section 10). */
    public final AtomicLong sendAsDuplicates = new AtomicLong();
    /** Send-as messages Openfire stored offline while their recipient was logging in (section 10). */
    public final AtomicLong loginRaceHeld = new AtomicLong();
    /** Of those, handed over by Openfire itself during the login (not routed again). */
    public final AtomicLong loginRaceHandedOver = new AtomicLong();
    /** Of those, routed again once the login was over. */
    public final AtomicLong loginRaceRerouted = new AtomicLong();
    /** Of those, given up because too many were kept at once. */
    public final AtomicLong loginRaceDropped = new AtomicLong();
}
