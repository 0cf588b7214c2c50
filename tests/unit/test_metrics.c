/*
 * Unit tests of the fixed-bucket histograms and the /metrics text (metrics.c).
 */
#include "metrics.h"
#include "task.h"

#include <stdint.h>
#include <string.h>

int main(void)
{
    gw_hist_t h;
    char buf[4096];
    int n;

    memset(&h, 0, sizeof(h));
    gw_hist_observe(&h, 0.0004);    /* le 0.0005 */
    gw_hist_observe(&h, 0.0005);    /* le 0.0005: bounds are inclusive */
    gw_hist_observe(&h, 0.003);     /* le 0.005 */
    gw_hist_observe(&h, 3.0);       /* +Inf only */
    gw_hist_observe(&h, -1.0);      /* clock went backwards: counts as 0 */
    gw_hist_observe(&h, 0.0 / 0.0); /* NaN: counts as 0, never poisons the sum */
    ASSERT_EQ(h.count, 6);
    n = gw_hist_render(&h, "imgw_x_seconds", buf, sizeof(buf));
    ASSERT(n > 0);
    ASSERT(strstr(buf, "# TYPE imgw_x_seconds histogram\n") == buf);
    ASSERT(strstr(buf, "imgw_x_seconds_bucket{le=\"0.0005\"} 4\n") != NULL);
    ASSERT(strstr(buf, "imgw_x_seconds_bucket{le=\"0.0025\"} 4\n") != NULL);
    ASSERT(strstr(buf, "imgw_x_seconds_bucket{le=\"0.005\"} 5\n") != NULL);
    ASSERT(strstr(buf, "imgw_x_seconds_bucket{le=\"2.5\"} 5\n") != NULL);
    ASSERT(strstr(buf, "imgw_x_seconds_bucket{le=\"+Inf\"} 6\n") != NULL);
    ASSERT(strstr(buf, "imgw_x_seconds_sum 3.003900\n") != NULL);
    ASSERT(strstr(buf, "imgw_x_seconds_count 6\n") != NULL);
    /* Too small a buffer: -1, never a truncated answer. */
    ASSERT_EQ(gw_hist_render(&h, "imgw_x_seconds", buf, 100), -1);

    /*
     * Worst case: every counter at its widest. The whole /metrics answer must
     * fit the 4096-byte body front.c gives it: the router's own lines take at
     * most about 1,300 bytes at 20-digit values, the Redis lines 200, so this
     * part must stay under 2,500.
     */
    for (int i = 0; i <= GW_HIST_NBOUNDS; i++)
        gw_metrics.send_ack.counts[i] = gw_metrics.store_batch.counts[i] = 0;
    gw_metrics.send_ack.count = gw_metrics.store_batch.count = UINT64_MAX;
    gw_metrics.send_ack.counts[GW_HIST_NBOUNDS] = gw_metrics.store_batch.counts[GW_HIST_NBOUNDS] =
        UINT64_MAX;
    gw_metrics.send_ack.sum = gw_metrics.store_batch.sum = 1e12;
    gw_metrics.link_ups = gw_metrics.link_downs = gw_metrics.reloads = UINT64_MAX;
    gw_metrics.reload_failures = UINT64_MAX;
    n = gw_metrics_render(buf, sizeof(buf), NULL, NULL);
    ASSERT(n > 0);
    printf("worst-case metrics.c part: %d bytes\n", n);
    ASSERT(n < 2500);
    ASSERT(strstr(buf, "imgw_link_downs_total 18446744073709551615\n") != NULL);
    ASSERT(strstr(buf, "imgw_redis_up") == NULL); /* no Redis configured: no Redis lines */
    TASK_DONE();
}
