/*
 * log.h - the one logging macro.
 *
 * gw_log() checks the level before formatting anything, so a disabled debug
 * line costs one comparison. libstrophe and libwebsockets logs are routed
 * here by their adapter modules (link.c, front.c).
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

extern int gw_log_level;

/* Parses "debug", "info", "warning", "error" or "none"; returns the level or -1. */
int gw_log_level_parse(const char *name);

void gw_log_raw(int level, const char *module, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define gw_log(level, module, ...)                                                                 \
    do {                                                                                           \
        if ((level) >= gw_log_level)                                                               \
            gw_log_raw((level), (module), __VA_ARGS__);                                            \
    } while (0)

#define gw_debug(m, ...) gw_log(GW_LOG_DEBUG, m, __VA_ARGS__)
#define gw_info(m, ...)  gw_log(GW_LOG_INFO, m, __VA_ARGS__)
#define gw_warn(m, ...)  gw_log(GW_LOG_WARNING, m, __VA_ARGS__)
#define gw_error(m, ...) gw_log(GW_LOG_ERROR, m, __VA_ARGS__)

#endif
