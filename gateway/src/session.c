/*
 * session.c - the local registry: a chained hash table of users.
 */
#include "session.h"
#include "gw.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct gw_registry {
    gw_user_t **buckets;
    size_t nbuckets; /* a power of two */
    size_t nusers;
    size_t nsessions;
};

static uint64_t hash(const char *s)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */

    while (*s) {
        h ^= (unsigned char)*s++;
        h *= 1099511628211ull;
    }
    return h;
}

int gw_registry_new(gw_registry_t **out)
{
    gw_registry_t *r = calloc(1, sizeof(*r));

    if (r == NULL)
        return GW_ENOMEM;
    r->nbuckets = 1024;
    r->buckets = calloc(r->nbuckets, sizeof(*r->buckets));
    if (r->buckets == NULL) {
        free(r);
        return GW_ENOMEM;
    }
    *out = r;
    return 0;
}

static void grow(gw_registry_t *r)
{
    size_t n = r->nbuckets * 2;
    gw_user_t **b = calloc(n, sizeof(*b));

    if (b == NULL)
        return; /* keep the old table: longer chains, still correct */
    for (size_t i = 0; i < r->nbuckets; i++) {
        gw_user_t *u = r->buckets[i];
        while (u) {
            gw_user_t *next = u->hnext;
            size_t k = (size_t)hash(u->id) & (n - 1);
            u->hnext = b[k];
            b[k] = u;
            u = next;
        }
    }
    free(r->buckets);
    r->buckets = b;
    r->nbuckets = n;
}

gw_user_t *gw_registry_find(const gw_registry_t *r, const char *user_id)
{
    gw_user_t *u = r->buckets[(size_t)hash(user_id) & (r->nbuckets - 1)];

    while (u && strcmp(u->id, user_id) != 0)
        u = u->hnext;
    return u;
}

gw_session_t *gw_registry_find_session(const gw_registry_t *r, const char *user_id, uint64_t id)
{
    gw_user_t *u = gw_registry_find(r, user_id);

    for (gw_session_t *s = u ? u->sessions : NULL; s; s = s->next)
        if (s->id == id && !s->closing)
            return s;
    return NULL;
}

int gw_registry_attach(gw_registry_t *r, gw_session_t *s, const char *user_id,
                       unsigned max_per_user)
{
    gw_user_t *u = gw_registry_find(r, user_id);
    int first = 0;

    if (u == NULL) {
        size_t len = strlen(user_id);
        size_t k;
        u = calloc(1, sizeof(*u) + len + 1);
        if (u == NULL)
            return GW_ENOMEM;
        memcpy(u->id, user_id, len + 1);
        if (r->nusers + 1 > r->nbuckets)
            grow(r);
        k = (size_t)hash(user_id) & (r->nbuckets - 1);
        u->hnext = r->buckets[k];
        r->buckets[k] = u;
        r->nusers++;
        first = 1;
    } else if (u->nsessions >= max_per_user) {
        return GW_ELIMIT;
    }
    s->prev = NULL;
    s->next = u->sessions;
    if (u->sessions)
        u->sessions->prev = s;
    u->sessions = s;
    u->nsessions++;
    s->user = u;
    r->nsessions++;
    return first;
}

int gw_registry_detach(gw_registry_t *r, gw_session_t *s)
{
    gw_user_t *u = s->user;
    gw_user_t **pp;

    if (u == NULL)
        return 0;
    if (s->prev)
        s->prev->next = s->next;
    else
        u->sessions = s->next;
    if (s->next)
        s->next->prev = s->prev;
    s->next = s->prev = NULL;
    s->user = NULL;
    u->nsessions--;
    r->nsessions--;
    if (u->nsessions > 0)
        return 0;
    pp = &r->buckets[(size_t)hash(u->id) & (r->nbuckets - 1)];
    while (*pp != u)
        pp = &(*pp)->hnext;
    *pp = u->hnext;
    free(u);
    r->nusers--;
    return 1;
}

size_t gw_registry_user_count(const gw_registry_t *r)
{
    return r->nusers;
}

void gw_registry_foreach(const gw_registry_t *r, void (*fn)(void *ud, gw_user_t *u), void *ud)
{
    for (size_t i = 0; i < r->nbuckets; i++)
        for (gw_user_t *u = r->buckets[i]; u; u = u->hnext)
            fn(ud, u);
}

size_t gw_registry_session_count(const gw_registry_t *r)
{
    return r->nsessions;
}

void gw_registry_free(gw_registry_t *r)
{
    if (r == NULL)
        return;
    for (size_t i = 0; i < r->nbuckets; i++) {
        gw_user_t *u = r->buckets[i];
        while (u) {
            gw_user_t *next = u->hnext;
            free(u);
            u = next;
        }
    }
    free(r->buckets);
    free(r);
}

/* ---- string set ---------------------------------------------------------- */

typedef struct snode {
    struct snode *next;
    char s[];
} snode_t;

struct gw_strset {
    snode_t **buckets;
    size_t nbuckets; /* a power of two */
    size_t count;
};

int gw_strset_new(gw_strset_t **out)
{
    gw_strset_t *set = calloc(1, sizeof(*set));

    if (set == NULL)
        return GW_ENOMEM;
    set->nbuckets = 1024;
    set->buckets = calloc(set->nbuckets, sizeof(*set->buckets));
    if (set->buckets == NULL) {
        free(set);
        return GW_ENOMEM;
    }
    *out = set;
    return 0;
}

int gw_strset_has(const gw_strset_t *set, const char *s)
{
    const snode_t *n = set->buckets[(size_t)hash(s) & (set->nbuckets - 1)];

    while (n && strcmp(n->s, s) != 0)
        n = n->next;
    return n != NULL;
}

static void strset_grow(gw_strset_t *set)
{
    size_t nb = set->nbuckets * 2;
    snode_t **b = calloc(nb, sizeof(*b));

    if (b == NULL)
        return;
    for (size_t i = 0; i < set->nbuckets; i++) {
        snode_t *n = set->buckets[i];
        while (n) {
            snode_t *next = n->next;
            size_t k = (size_t)hash(n->s) & (nb - 1);
            n->next = b[k];
            b[k] = n;
            n = next;
        }
    }
    free(set->buckets);
    set->buckets = b;
    set->nbuckets = nb;
}

int gw_strset_add(gw_strset_t *set, const char *s)
{
    size_t len = strlen(s);
    snode_t *n;
    size_t k;

    if (gw_strset_has(set, s))
        return 0;
    n = malloc(sizeof(*n) + len + 1);
    if (n == NULL)
        return GW_ENOMEM;
    memcpy(n->s, s, len + 1);
    if (set->count + 1 > set->nbuckets)
        strset_grow(set);
    k = (size_t)hash(s) & (set->nbuckets - 1);
    n->next = set->buckets[k];
    set->buckets[k] = n;
    set->count++;
    return 1;
}

size_t gw_strset_count(const gw_strset_t *set)
{
    return set->count;
}

void gw_strset_clear(gw_strset_t *set)
{
    for (size_t i = 0; i < set->nbuckets; i++) {
        snode_t *n = set->buckets[i];
        while (n) {
            snode_t *next = n->next;
            free(n);
            n = next;
        }
        set->buckets[i] = NULL;
    }
    set->count = 0;
}

void gw_strset_free(gw_strset_t *set)
{
    if (set == NULL)
        return;
    gw_strset_clear(set);
    free(set->buckets);
    free(set);
}

/* ---- client id map ------------------------------------------------------------ */

typedef struct cnode {
    struct cnode *hnext;
    gw_cid_entry_t e;
    size_t slot; /* index in the eviction ring */
    char key[];  /* user '\n' cid */
} cnode_t;

struct gw_cidmap {
    cnode_t **buckets;
    size_t nbuckets;
    cnode_t **ring; /* insertion order, for eviction */
    size_t cap, head, count;
};

int gw_cidmap_new(size_t capacity, gw_cidmap_t **out)
{
    gw_cidmap_t *m = calloc(1, sizeof(*m));

    if (m == NULL)
        return GW_ENOMEM;
    m->cap = capacity ? capacity : 1;
    m->nbuckets = 1;
    while (m->nbuckets < m->cap)
        m->nbuckets *= 2;
    m->buckets = calloc(m->nbuckets, sizeof(*m->buckets));
    m->ring = calloc(m->cap, sizeof(*m->ring));
    if (m->buckets == NULL || m->ring == NULL) {
        free(m->buckets);
        free(m->ring);
        free(m);
        return GW_ENOMEM;
    }
    *out = m;
    return 0;
}

static int make_key(char *buf, size_t len, const char *user, const char *cid)
{
    int n = snprintf(buf, len, "%s\n%s", user, cid);

    return n > 0 && (size_t)n < len ? 0 : -1;
}

static cnode_t **cfind(gw_cidmap_t *m, const char *key)
{
    cnode_t **pp = &m->buckets[(size_t)hash(key) & (m->nbuckets - 1)];

    while (*pp && strcmp((*pp)->key, key) != 0)
        pp = &(*pp)->hnext;
    return pp;
}

gw_cid_entry_t *gw_cidmap_get(gw_cidmap_t *m, const char *user, const char *cid)
{
    char key[160];
    cnode_t **pp;

    if (make_key(key, sizeof(key), user, cid) != 0)
        return NULL;
    pp = cfind(m, key);
    return *pp ? &(*pp)->e : NULL;
}

static void cremove(gw_cidmap_t *m, cnode_t *n)
{
    cnode_t **pp = cfind(m, n->key);

    if (*pp == n)
        *pp = n->hnext;
    m->ring[n->slot] = NULL;
    m->count--;
    free(n);
}

gw_cid_entry_t *gw_cidmap_put(gw_cidmap_t *m, const char *user, const char *cid)
{
    char key[160];
    cnode_t **pp, *n;
    size_t len;

    if (make_key(key, sizeof(key), user, cid) != 0)
        return NULL;
    pp = cfind(m, key);
    if (*pp) {
        memset(&(*pp)->e, 0, sizeof((*pp)->e));
        return &(*pp)->e;
    }
    /* The ring slot at head is the oldest entry (or empty): reuse it. */
    if (m->ring[m->head])
        cremove(m, m->ring[m->head]);
    len = strlen(key);
    n = calloc(1, sizeof(*n) + len + 1);
    if (n == NULL)
        return NULL;
    memcpy(n->key, key, len + 1);
    n->slot = m->head;
    m->ring[m->head] = n;
    m->head = (m->head + 1) % m->cap;
    pp = cfind(m, key);
    n->hnext = *pp;
    *pp = n;
    m->count++;
    return &n->e;
}

void gw_cidmap_del(gw_cidmap_t *m, const char *user, const char *cid)
{
    char key[160];
    cnode_t **pp;

    if (make_key(key, sizeof(key), user, cid) != 0)
        return;
    pp = cfind(m, key);
    if (*pp)
        cremove(m, *pp);
}

void gw_cidmap_free(gw_cidmap_t *m)
{
    if (m == NULL)
        return;
    for (size_t i = 0; i < m->cap; i++)
        free(m->ring[i]);
    free(m->ring);
    free(m->buckets);
    free(m);
}

/* ---- session frame queue -------------------------------------------------------- */

int gw_session_queue_push(gw_session_t *s, gw_payload_t *p, uint32_t max)
{
    if (s->qlen == s->qcap) {
        uint32_t ncap = s->qcap ? s->qcap * 2 : 4;
        gw_payload_t **nq;
        if (s->qlen >= max)
            return GW_EFULL;
        if (ncap > max)
            ncap = max;
        nq = malloc(ncap * sizeof(*nq));
        if (nq == NULL)
            return GW_ENOMEM;
        for (uint32_t i = 0; i < s->qlen; i++)
            nq[i] = s->q[(s->qhead + i) % s->qcap];
        free(s->q);
        s->q = nq;
        s->qcap = ncap;
        s->qhead = 0;
    }
    s->q[(s->qhead + s->qlen) % s->qcap] = gw_payload_ref(p);
    s->qlen++;
    return 0;
}

gw_payload_t *gw_session_queue_pop(gw_session_t *s)
{
    gw_payload_t *p;

    if (s->qlen == 0)
        return NULL;
    p = s->q[s->qhead];
    s->qhead = (s->qhead + 1) % s->qcap;
    s->qlen--;
    return p;
}

void gw_session_queue_free(gw_session_t *s)
{
    gw_payload_t *p;

    while ((p = gw_session_queue_pop(s)) != NULL)
        gw_payload_unref(p);
    free(s->q);
    s->q = NULL;
    s->qcap = 0;
}
