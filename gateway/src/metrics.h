/*
 * metrics.h - process-wide counters and latency histograms for /metrics.
 *
 * The router's own counters live in the router; what is measured in several
 * modules (store batch latency in store.c, browser send to ack in router.c,
 * link transitions, reloads) lives here, in one struct, so each call site is
 * one line and no module needs a handle to another. Everything runs on the
 * loop thread: no locks, no atomics.
 *
 * Histograms have fixed buckets in seconds (GW_HIST_BOUNDS) and render in the
 * Prometheus text format (cumulative _bucket{le=...}, _sum, _count).
 */
#ifndef GW_METRICS_H
#define GW_METRICS_H

#include <stddef.h>
#include <stdint.h>

struct gw_cache;
struct gw_relay;

/* Upper bounds of the buckets, in seconds; a last bucket, +Inf, holds the rest. */
#define GW_HIST_NBOUNDS 11

typedef struct gw_hist {
    uint64_t counts[GW_HIST_NBOUNDS + 1]; /* per bucket, not cumulative; last is +Inf */
    uint64_t count;
    double sum; /* seconds */
} gw_hist_t;

typedef struct gw_metrics {
    gw_hist_t store_batch;     /* one multi-row INSERT: sent to result */
    gw_hist_t send_ack;        /* a browser send: frame parsed to ack queued */
    uint64_t link_ups;         /* component handshakes that succeeded */
    uint64_t link_downs;       /* component link losses (each is followed by a reconnect) */
    uint64_t reloads;          /* SIGHUP reloads applied */
    uint64_t reload_failures;  /* SIGHUP reloads refused (bad file) */
    uint64_t sockjs_receivers; /* SockJS receiver requests attached to their session */
} gw_metrics_t;

extern gw_metrics_t gw_metrics;

/* Monotonic nanoseconds, for latency measurements. */
uint64_t gw_metrics_now_ns(void);

/* Adds one observation of seconds (negative counts as 0). */
void gw_hist_observe(gw_hist_t *h, double seconds);

/* Adds the time elapsed since start_ns (from gw_metrics_now_ns()). */
void gw_hist_since(gw_hist_t *h, uint64_t start_ns);

/*
 * Writes histogram h as metric name (e.g. "imgw_store_batch_seconds") into
 * buf. Returns the length written, or -1 if it does not fit in len.
 */
int gw_hist_render(const gw_hist_t *h, const char *name, char *buf, size_t len);

/*
 * Writes everything in gw_metrics, plus the Redis users' state and error
 * counters (cache and relay may be NULL: Redis not configured), into buf.
 * Returns the length written, or -1 if it does not fit in len.
 */
int gw_metrics_render(char *buf, size_t len, const struct gw_cache *cache,
                      const struct gw_relay *relay);

#endif
