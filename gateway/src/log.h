/*
 * log.h - the one logging macro.
 *
 * gw_log() checks the level before formatting anything, so a disabled debug
 * line costs one comparison. libwebsockets' logs are routed here by its
 * adapter module (front.c).
 */
#ifndef GW_LOG_H
#define GW_LOG_H

enum gw_log_level {
    GW_LOG_DEBUG = 0,
    GW_LOG_INFO = 1,
    GW_LOG_WARNING = 2,
    GW_LOG_ERROR = 3,
    GW_LOG_NONE = 4,
};

#include <stdint.h>

extern int gw_log_level;

/* Monotonic milliseconds, for rate limits. */
uint64_t gw_log_now_ms(void);

/* Parses "debug", "info", "warning", "error" or "none"; returns the level or -1. */
int gw_log_level_parse(const char *name);

void gw_log_raw(int level, const char *module, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define gw_log(level, module, ...)                                                                 \
    do {                                                                                           \
        if ((level) >= gw_log_level)                                                               \
            gw_log_raw((level), (module), __VA_ARGS__);                                            \
    } while (0)

/*
 * Like gw_log, but at most one line per second from this call site; the
 * number of lines dropped meanwhile is reported with the next one. For
 * conditions a peer can trigger in a loop (refused connections, accept
 * failures), so they cannot flood the log.
 */
#define gw_log_limited(level, module, ...)                                                         \
    do {                                                                                           \
        static uint64_t gw_last_ms_;                                                               \
        static unsigned gw_dropped_;                                                               \
        uint64_t gw_now_ = gw_log_now_ms();                                                        \
        if (gw_now_ - gw_last_ms_ >= 1000) {                                                       \
            if (gw_dropped_)                                                                       \
                gw_log(level, module, "(%u similar lines suppressed)", gw_dropped_);               \
            gw_dropped_ = 0;                                                                       \
            gw_last_ms_ = gw_now_;                                                                 \
            gw_log(level, module, __VA_ARGS__);                                                    \
        } else {                                                                                   \
            gw_dropped_++;                                                                         \
        }                                                                                          \
    } while (0)

#define gw_debug(m, ...) gw_log(GW_LOG_DEBUG, m, __VA_ARGS__)
#define gw_info(m, ...)  gw_log(GW_LOG_INFO, m, __VA_ARGS__)
#define gw_warn(m, ...)  gw_log(GW_LOG_WARNING, m, __VA_ARGS__)
#define gw_error(m, ...) gw_log(GW_LOG_ERROR, m, __VA_ARGS__)

#endif
