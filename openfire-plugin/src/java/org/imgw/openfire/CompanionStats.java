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
    /** Web presence updates broadcast. */
    public final AtomicLong presenceUpdates = new AtomicLong();
}
