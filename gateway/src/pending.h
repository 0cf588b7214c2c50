/*
 * pending.h - counts of sessions that have not authenticated yet, globally
 * and per client address, so that no one can hold unbounded state without a
 * ticket (WebSocket, SockJS and the JSON/JSONP API all count here). No I/O.
 */
#ifndef GW_PENDING_H
#define GW_PENDING_H

#include <stddef.h>

typedef struct gw_pending gw_pending_t;

/* Client addresses are compared as strings of at most this many bytes. */
#define GW_PENDING_ADDR_MAX 64

/*
 * Creates a counter with a global cap and a cap per address (each >= 1).
 * Returns 0 or GW_ENOMEM.
 */
int gw_pending_new(size_t max_total, size_t max_per_addr, gw_pending_t **out);

/*
 * Takes one place for addr (any string; longer ones are cut to
 * GW_PENDING_ADDR_MAX - 1 bytes). Returns 0, or GW_EFULL when the global or
 * the address's cap is reached (nothing was taken), or GW_ENOMEM.
 */
int gw_pending_acquire(gw_pending_t *p, const char *addr);

/* Gives back a place taken for addr. Releasing more than was taken is a programmer error. */
void gw_pending_release(gw_pending_t *p, const char *addr);

/* 1 when acquire() for addr would fail now. */
int gw_pending_full(const gw_pending_t *p, const char *addr);

/* Places taken in all. */
size_t gw_pending_total(const gw_pending_t *p);

void gw_pending_free(gw_pending_t *p);

#endif
