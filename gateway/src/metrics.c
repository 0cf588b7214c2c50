/*
 * metrics.c - fixed-bucket histograms and process-wide counters.
 */
#include "metrics.h"
#include "cache.h"
#include "relay.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <time.h>

gw_metrics_t gw_metrics;

/*
 * From half a millisecond (a batch on a local socket) to 2.5 s (a database
 * that is about to be declared down): the range the alerts and the dashboard
 * look at. Labels are written as text so the output never depends on %g.
 */
static const double bounds[GW_HIST_NBOUNDS] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                               0.05,   0.1,   0.25,   1,     2.5};
static const char *const bound_text[GW_HIST_NBOUNDS] = {
    "0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "1", "2.5"};

uint64_t gw_metrics_now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void gw_hist_observe(gw_hist_t *h, double seconds)
{
    size_t i = 0;

    if (!(seconds > 0)) /* also NaN */
        seconds = 0;
    while (i < GW_HIST_NBOUNDS && seconds > bounds[i])
        i++;
    h->counts[i]++;
    h->count++;
    h->sum += seconds;
}

void gw_hist_since(gw_hist_t *h, uint64_t start_ns)
{
    uint64_t now = gw_metrics_now_ns();

    gw_hist_observe(h, now > start_ns ? (double)(now - start_ns) / 1e9 : 0.0);
}

/* Appends to buf at *off; -1 once it no longer fits (and from then on). */
__attribute__((format(printf, 4, 5))) static int put(char *buf, size_t len, size_t *off,
                                                     const char *fmt, ...)
{
    va_list ap;
    int n;

    if (*off >= len)
        return -1;
    va_start(ap, fmt);
    n = vsnprintf(buf + *off, len - *off, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= len - *off) {
        *off = len;
        return -1;
    }
    *off += (size_t)n;
    return 0;
}

int gw_hist_render(const gw_hist_t *h, const char *name, char *buf, size_t len)
{
    size_t off = 0;
    uint64_t cum = 0;

    put(buf, len, &off, "# TYPE %s histogram\n", name);
    for (size_t i = 0; i < GW_HIST_NBOUNDS; i++) {
        cum += h->counts[i];
        put(buf, len, &off, "%s_bucket{le=\"%s\"} %" PRIu64 "\n", name, bound_text[i], cum);
    }
    put(buf, len, &off, "%s_bucket{le=\"+Inf\"} %" PRIu64 "\n", name, h->count);
    put(buf, len, &off, "%s_sum %.6f\n%s_count %" PRIu64 "\n", name, h->sum, name, h->count);
    return off >= len ? -1 : (int)off;
}

int gw_metrics_render(char *buf, size_t len, const struct gw_cache *cache,
                      const struct gw_relay *relay)
{
    gw_cache_stats_t cs;
    gw_relay_stats_t rs;
    size_t off = 0;
    int n;

    gw_cache_get_stats(cache, &cs);
    gw_relay_get_stats(relay, &rs);
    n = gw_hist_render(&gw_metrics.send_ack, "imgw_send_ack_seconds", buf, len);
    if (n < 0)
        return -1;
    off = (size_t)n;
    n = gw_hist_render(&gw_metrics.store_batch, "imgw_store_batch_seconds", buf + off, len - off);
    if (n < 0)
        return -1;
    off += (size_t)n;
    put(buf, len, &off,
        "# TYPE imgw_link_ups_total counter\nimgw_link_ups_total %" PRIu64 "\n"
        "# TYPE imgw_link_downs_total counter\nimgw_link_downs_total %" PRIu64 "\n"
        "# TYPE imgw_reloads_total counter\nimgw_reloads_total %" PRIu64 "\n"
        "# TYPE imgw_reload_failures_total counter\nimgw_reload_failures_total %" PRIu64 "\n"
        "# TYPE imgw_sockjs_receivers_total counter\nimgw_sockjs_receivers_total %" PRIu64 "\n",
        gw_metrics.link_ups, gw_metrics.link_downs, gw_metrics.reloads, gw_metrics.reload_failures,
        gw_metrics.sockjs_receivers);
    if (cache != NULL)
        put(buf, len, &off,
            "# TYPE imgw_redis_up gauge\nimgw_redis_up %d\n"
            "# TYPE imgw_redis_errors_total counter\n"
            "imgw_redis_errors_total{user=\"cache\"} %" PRIu64 "\n"
            "imgw_redis_errors_total{user=\"relay\"} %" PRIu64 "\n",
            gw_cache_is_up(cache), cs.errors, rs.errors);
    return off >= len ? -1 : (int)off;
}
