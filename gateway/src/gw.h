/*
 * gw.h - error codes and small helpers shared by every imgw module.
 *
 * Functions return 0 on success and a negative GW_E* code on failure, the way
 * libuv does; errno values are converted right at the system call.
 */
#ifndef GW_H
#define GW_H

#include <stddef.h>
#include <stdint.h>

#define GW_VERSION "0.1.0"

enum {
    GW_OK = 0,
    GW_ENOMEM = -1,    /* allocation failed */
    GW_EINVAL = -2,    /* invalid argument or input */
    GW_ERANGE = -3,    /* value out of bounds */
    GW_EFULL = -4,     /* a bounded queue is full */
    GW_ENOTFOUND = -5, /* no such user, key or session */
    GW_EEXPIRED = -6,  /* a ticket is past its expiry */
    GW_EAUTH = -7,     /* a signature does not match */
    GW_EIO = -8,       /* a system call failed */
    GW_ELINK = -9,     /* the XMPP link is not up */
    GW_ELIMIT = -10,   /* a configured limit was reached */
};

/* Returns a static, human readable name for a GW_E* code. */
const char *gw_strerror(int err);

/* Milliseconds since the Unix epoch (wall clock). */
uint64_t gw_now_ms(void);

#define GW_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define GW_UNUSED(x)     ((void)(x))

#endif
