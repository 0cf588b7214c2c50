/*
 * util.c - error names and clocks.
 */
#include "gw.h"

#include <time.h>

const char *gw_strerror(int err)
{
    switch (err) {
    case GW_OK: return "ok";
    case GW_ENOMEM: return "out of memory";
    case GW_EINVAL: return "invalid argument";
    case GW_ERANGE: return "out of range";
    case GW_EFULL: return "queue full";
    case GW_ENOTFOUND: return "not found";
    case GW_EEXPIRED: return "expired";
    case GW_EAUTH: return "authentication failed";
    case GW_EIO: return "input/output error";
    case GW_ELINK: return "XMPP link down";
    case GW_ELIMIT: return "limit reached";
    default: return "unknown error";
    }
}

uint64_t gw_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}
