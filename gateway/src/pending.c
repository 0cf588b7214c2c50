/*
 * pending.c - counts of not-yet-authenticated sessions per client address.
 *
 * Entries live in a chained hash and are removed when their count drops to
 * zero, so the table never holds more entries than the global cap.
 */
#include "pending.h"
#include "gw.h"

#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define BUCKETS 1024

typedef struct entry {
    struct entry *next;
    size_t count;
    char addr[GW_PENDING_ADDR_MAX];
} entry_t;

struct gw_pending {
    size_t max_total, max_per_addr, total;
    entry_t *b[BUCKETS];
};

static unsigned hash(const char *s)
{
    uint32_t x = 2166136261u;

    for (size_t i = 0; s[i] && i < GW_PENDING_ADDR_MAX - 1; i++)
        x = (x ^ (unsigned char)s[i]) * 16777619u;
    return x % BUCKETS;
}

static entry_t **slot(const gw_pending_t *p, const char *addr)
{
    entry_t **pp = (entry_t **)&p->b[hash(addr)];

    while (*pp && strncmp((*pp)->addr, addr, GW_PENDING_ADDR_MAX - 1) != 0)
        pp = &(*pp)->next;
    return pp;
}

int gw_pending_new(size_t max_total, size_t max_per_addr, gw_pending_t **out)
{
    gw_pending_t *p = calloc(1, sizeof(*p));

    if (p == NULL)
        return GW_ENOMEM;
    p->max_total = max_total ? max_total : 1;
    p->max_per_addr = max_per_addr ? max_per_addr : 1;
    *out = p;
    return 0;
}

int gw_pending_full(const gw_pending_t *p, const char *addr)
{
    entry_t *e = *slot(p, addr);

    return p->total >= p->max_total || (e && e->count >= p->max_per_addr);
}

int gw_pending_acquire(gw_pending_t *p, const char *addr)
{
    entry_t **pp = slot(p, addr), *e = *pp;

    if (p->total >= p->max_total || (e && e->count >= p->max_per_addr))
        return GW_EFULL;
    if (e == NULL) {
        e = calloc(1, sizeof(*e));
        if (e == NULL)
            return GW_ENOMEM;
        strncpy(e->addr, addr, sizeof(e->addr) - 1);
        *pp = e;
    }
    e->count++;
    p->total++;
    return 0;
}

void gw_pending_release(gw_pending_t *p, const char *addr)
{
    entry_t **pp = slot(p, addr), *e = *pp;

    assert(e != NULL && e->count > 0 && p->total > 0);
    if (e == NULL)
        return;
    p->total--;
    if (--e->count == 0) {
        *pp = e->next;
        free(e);
    }
}

size_t gw_pending_total(const gw_pending_t *p)
{
    return p->total;
}

void gw_pending_free(gw_pending_t *p)
{
    if (p == NULL)
        return;
    for (size_t i = 0; i < BUCKETS; i++)
        while (p->b[i]) {
            entry_t *e = p->b[i];
            p->b[i] = e->next;
            free(e);
        }
    free(p);
}
