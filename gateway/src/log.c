/*
 * log.c - timestamped log lines on stderr.
 *
 * One fprintf per line keeps lines whole when several processes share a
 * terminal or a journal.
 */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

int gw_log_level = GW_LOG_INFO;

uint64_t gw_log_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static const char *level_names[] = {"debug", "info", "warning", "error", "none"};

int gw_log_level_parse(const char *name)
{
    for (int i = 0; i < (int)(sizeof(level_names) / sizeof(level_names[0])); i++)
        if (strcmp(name, level_names[i]) == 0)
            return i;
    if (strcmp(name, "warn") == 0)
        return GW_LOG_WARNING;
    return -1;
}

void gw_log_raw(int level, const char *module, const char *fmt, ...)
{
    char msg[1024];
    char stamp[32];
    struct timeval tv;
    struct tm tm;
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);

    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
    if (level < GW_LOG_DEBUG || level > GW_LOG_ERROR)
        level = GW_LOG_ERROR;
    fprintf(stderr, "%s.%03dZ %-7s %-6s %s\n", stamp, (int)(tv.tv_usec / 1000), level_names[level],
            module, msg);
}
