/*
 * outbox.c - browser sends kept until the XMPP server has routed them.
 *
 * Each entry is in one of three lists: pending (journalled, waiting for the
 * store), ready (durable, waiting to be written) or written (written on the
 * current connection, waiting for a mark that covers it). Marks grow with
 * every write, so the written list is in mark order and a confirmation pops
 * from its front. A lost connection moves the written list back to the front
 * of the ready list: those sends are older than anything still waiting.
 */
#include "outbox.h"
#include "gw.h"
#include "log.h"
#include "payload.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* A journal line longer than this was not written by us. */
#define LINE_MAX_BYTES (8u << 20)
/* The current segment is closed for appends past this size. */
#define SEGMENT_BYTES (1u << 20)

typedef enum { E_PENDING, E_READY, E_WRITTEN } estate_t;

typedef struct segment {
    struct segment *next;
    uint64_t num;
    size_t live; /* entries added in it and not yet confirmed */
} segment_t;

typedef struct elist {
    gw_outbox_entry_t *head, *tail;
    size_t len;
} elist_t;

struct gw_outbox_entry {
    gw_outbox_entry_t *next, *prev;
    estate_t state;
    uint64_t mark;
    segment_t *seg;
    gw_outbox_msg_t m;
};

struct gw_outbox {
    gw_outbox_write_fn write;
    void *ud;
    size_t max_waiting;
    int sync;
    elist_t pending, ready, written;
    /* journal */
    char dir[1024];   /* <spool_dir>/outbox, or "" */
    segment_t *segs;  /* oldest first */
    segment_t *cur;   /* the one appended to, or NULL before the first append */
    int fd;           /* cur's file, or -1 */
    size_t cur_bytes; /* bytes in the current segment */
    uint64_t next_num;
};

/* ---- lists ------------------------------------------------------------------ */

static void elist_push(elist_t *l, gw_outbox_entry_t *e)
{
    e->next = NULL;
    e->prev = l->tail;
    if (l->tail)
        l->tail->next = e;
    else
        l->head = e;
    l->tail = e;
    l->len++;
}

static void elist_remove(elist_t *l, gw_outbox_entry_t *e)
{
    if (e->prev)
        e->prev->next = e->next;
    else
        l->head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        l->tail = e->prev;
    e->next = e->prev = NULL;
    l->len--;
}

/* Puts all of b in front of a, keeping b's order. */
static void elist_prepend_all(elist_t *a, elist_t *b)
{
    if (b->head == NULL)
        return;
    b->tail->next = a->head;
    if (a->head)
        a->head->prev = b->tail;
    else
        a->tail = b->tail;
    a->head = b->head;
    a->len += b->len;
    b->head = b->tail = NULL;
    b->len = 0;
}

static elist_t *list_of(gw_outbox_t *ob, const gw_outbox_entry_t *e)
{
    switch (e->state) {
    case E_PENDING: return &ob->pending;
    case E_READY: return &ob->ready;
    default: return &ob->written;
    }
}

static void msg_free(gw_outbox_msg_t *m)
{
    free(m->user);
    free(m->to);
    free(m->cid);
    free(m->kind);
    free(m->body);
}

static int msg_copy(gw_outbox_msg_t *dst, const gw_outbox_msg_t *src)
{
    memset(dst, 0, sizeof(*dst));
    dst->id = src->id;
    dst->ts = src->ts;
    dst->user = strdup(src->user ? src->user : "");
    dst->to = strdup(src->to ? src->to : "");
    dst->cid = src->cid ? strdup(src->cid) : NULL;
    dst->kind = strdup(src->kind ? src->kind : "text");
    dst->body = malloc(src->body_len + 1);
    if (!dst->user || !dst->to || (src->cid && !dst->cid) || !dst->kind || !dst->body) {
        msg_free(dst);
        return GW_ENOMEM;
    }
    memcpy(dst->body, src->body, src->body_len);
    dst->body[src->body_len] = '\0';
    dst->body_len = src->body_len;
    return 0;
}

/* ---- journal ------------------------------------------------------------------ */

static void seg_path(const gw_outbox_t *ob, uint64_t num, char *buf, size_t len)
{
    snprintf(buf, len, "%s/%016" PRIx64 ".jsonl", ob->dir, num);
}

static void seg_release(gw_outbox_t *ob, segment_t *seg);

static int seg_open_new(gw_outbox_t *ob)
{
    segment_t *s = calloc(1, sizeof(*s));
    segment_t **pp = &ob->segs;
    segment_t *old = ob->cur;
    char path[1100];

    if (s == NULL)
        return GW_ENOMEM;
    s->num = ob->next_num++;
    seg_path(ob, s->num, path, sizeof(path));
    if (ob->fd >= 0)
        close(ob->fd);
    ob->fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (ob->fd < 0) {
        gw_error("outbox", "cannot open journal %s: %s", path, strerror(errno));
        free(s);
        return GW_EIO;
    }
    ob->cur_bytes = 0;
    while (*pp)
        pp = &(*pp)->next;
    *pp = s;
    ob->cur = s;
    /* The old one may hold nothing live already: it goes now. */
    if (old != NULL)
        seg_release(ob, old);
    return 0;
}

/* Drops a segment that holds no live entry, unless it is the current one. */
static void seg_release(gw_outbox_t *ob, segment_t *seg)
{
    segment_t **pp = &ob->segs;
    char path[1100];

    if (seg == NULL || seg->live > 0)
        return;
    if (seg == ob->cur) {
        /* Nothing in it is needed any more: start it over rather than let it grow. */
        if (ob->fd >= 0 && ob->cur_bytes > 0 && ftruncate(ob->fd, 0) == 0)
            ob->cur_bytes = 0;
        return;
    }
    while (*pp && *pp != seg)
        pp = &(*pp)->next;
    if (*pp == NULL)
        return;
    *pp = seg->next;
    seg_path(ob, seg->num, path, sizeof(path));
    if (unlink(path) != 0 && errno != ENOENT)
        gw_warn("outbox", "cannot remove %s: %s", path, strerror(errno));
    free(seg);
}

static int journal_append(gw_outbox_t *ob, const gw_outbox_msg_t *m, segment_t **seg)
{
    json_object *o, *a;
    const char *text;
    char num[24];
    size_t len;
    ssize_t n;
    int rc = 0;

    *seg = NULL;
    if (ob->dir[0] == '\0')
        return 0;
    if ((ob->fd < 0 || ob->cur_bytes >= SEGMENT_BYTES) && (rc = seg_open_new(ob)) != 0)
        return rc;
    o = json_object_new_object();
    a = json_object_new_object();
    if (o == NULL || a == NULL) {
        json_object_put(o);
        json_object_put(a);
        return GW_ENOMEM;
    }
    snprintf(num, sizeof(num), "%" PRIu64, m->id);
    json_object_object_add(a, "i", json_object_new_string(num));
    json_object_object_add(a, "t", json_object_new_int64((int64_t)m->ts));
    json_object_object_add(a, "u", json_object_new_string(m->user));
    json_object_object_add(a, "r", json_object_new_string(m->to));
    if (m->cid)
        json_object_object_add(a, "c", json_object_new_string(m->cid));
    json_object_object_add(a, "k", json_object_new_string(m->kind));
    json_object_object_add(a, "b", json_object_new_string_len(m->body, (int)m->body_len));
    json_object_object_add(o, "a", a);
    text = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
    len = strlen(text);
    {
        char *line = malloc(len + 1);
        if (line == NULL) {
            json_object_put(o);
            return GW_ENOMEM;
        }
        memcpy(line, text, len);
        line[len] = '\n';
        n = write(ob->fd, line, len + 1);
        free(line);
    }
    json_object_put(o);
    if (n != (ssize_t)(len + 1) || (ob->sync && fdatasync(ob->fd) != 0)) {
        gw_error("outbox", "journal write failed: %s", n < 0 ? strerror(errno) : "short write");
        return GW_EIO;
    }
    ob->cur_bytes += len + 1;
    *seg = ob->cur;
    (*seg)->live++;
    return 0;
}

/* Reads one journal line into m; 0 or GW_EINVAL for anything not written by us. */
static int parse_line(const char *line, gw_outbox_msg_t *m)
{
    json_object *o = json_tokener_parse(line), *a, *v;
    const char *str[6] = {NULL};
    size_t blen = 0;
    static const char *const keys[6] = {"i", "u", "r", "c", "k", "b"};
    int rc = GW_EINVAL;
    char *end;

    memset(m, 0, sizeof(*m));
    if (o == NULL || !json_object_is_type(o, json_type_object) ||
        !json_object_object_get_ex(o, "a", &a) || !json_object_is_type(a, json_type_object))
        goto out;
    for (int i = 0; i < 6; i++) {
        if (!json_object_object_get_ex(a, keys[i], &v))
            continue;
        if (!json_object_is_type(v, json_type_string))
            goto out;
        str[i] = json_object_get_string(v);
        /* Embedded NUL: not something we wrote. */
        if (strlen(str[i]) != (size_t)json_object_get_string_len(v))
            goto out;
        if (i == 5)
            blen = (size_t)json_object_get_string_len(v);
    }
    if (!str[0] || !str[1] || !str[2] || !str[4] || !str[5] || !str[0][0] ||
        strspn(str[0], "0123456789") != strlen(str[0]) || strlen(str[0]) > 20)
        goto out;
    if (!json_object_object_get_ex(a, "t", &v) || !json_object_is_type(v, json_type_int))
        goto out;
    {
        gw_outbox_msg_t src = {0};
        src.id = strtoull(str[0], &end, 10);
        src.ts = (uint64_t)json_object_get_int64(v);
        src.user = (char *)str[1];
        src.to = (char *)str[2];
        src.cid = (char *)str[3];
        src.kind = (char *)str[4];
        src.body = (char *)str[5];
        src.body_len = blen;
        if (src.id == 0)
            goto out;
        rc = msg_copy(m, &src);
    }
out:
    json_object_put(o);
    return rc;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

    return x < y ? -1 : x > y;
}

/* The id of a done record ({"d":"<id>"}), or 0. */
static uint64_t done_id(const char *line)
{
    static const char prefix[] = "{\"d\":\"";
    char *end;
    uint64_t id;

    if (strncmp(line, prefix, sizeof(prefix) - 1) != 0)
        return 0;
    id = strtoull(line + sizeof(prefix) - 1, &end, 10);
    return strcmp(end, "\"}") == 0 ? id : 0;
}

typedef struct idset {
    uint64_t *v;
    size_t n, cap;
} idset_t;

static void idset_add(idset_t *s, uint64_t id)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 256;
        uint64_t *bigger = realloc(s->v, cap * sizeof(*bigger));
        if (bigger == NULL)
            return; /* only costs a harmless resend */
        s->v = bigger;
        s->cap = cap;
    }
    s->v[s->n++] = id;
}

static int idset_has(const idset_t *s, uint64_t id)
{
    return s->n && bsearch(&id, s->v, s->n, sizeof(*s->v), cmp_u64) != NULL;
}

/* Reads the done records of every segment (first pass of journal_load). */
static void read_done(gw_outbox_t *ob, const uint64_t *nums, size_t n, idset_t *done)
{
    for (size_t i = 0; i < n; i++) {
        char path[1100];
        FILE *f;
        char *line = NULL;
        size_t lcap = 0;
        ssize_t len;

        seg_path(ob, nums[i], path, sizeof(path));
        f = fopen(path, "r");
        if (f == NULL)
            continue;
        while ((len = getline(&line, &lcap, f)) > 0) {
            uint64_t id;
            if (line[len - 1] != '\n')
                continue;
            line[len - 1] = '\0';
            if ((id = done_id(line)) != 0)
                idset_add(done, id);
        }
        free(line);
        fclose(f);
    }
    if (done->n)
        qsort(done->v, done->n, sizeof(*done->v), cmp_u64);
}

/* Loads the segments an earlier run left, as pending entries, oldest first. */
static void journal_load(gw_outbox_t *ob)
{
    idset_t done = {0};
    DIR *d = opendir(ob->dir);
    struct dirent *de;
    uint64_t *nums = NULL;
    size_t n = 0, cap = 0, loaded = 0;

    if (d == NULL)
        return;
    while ((de = readdir(d)) != NULL) {
        char *end;
        uint64_t num;
        if (strlen(de->d_name) != 22 || strcmp(de->d_name + 16, ".jsonl") != 0)
            continue;
        num = strtoull(de->d_name, &end, 16);
        if (end != de->d_name + 16)
            continue;
        if (n == cap) {
            uint64_t *bigger = realloc(nums, (cap ? cap * 2 : 16) * sizeof(*nums));
            if (bigger == NULL)
                break;
            nums = bigger;
            cap = cap ? cap * 2 : 16;
        }
        nums[n++] = num;
    }
    closedir(d);
    if (n > 0)
        qsort(nums, n, sizeof(*nums), cmp_u64);
    read_done(ob, nums, n, &done);
    for (size_t i = 0; i < n; i++) {
        char path[1100];
        FILE *f;
        char *line = NULL;
        size_t lcap = 0;
        ssize_t len;
        segment_t *seg = calloc(1, sizeof(*seg)), **pp = &ob->segs;

        if (seg == NULL)
            break;
        seg->num = nums[i];
        if (nums[i] >= ob->next_num)
            ob->next_num = nums[i] + 1;
        while (*pp)
            pp = &(*pp)->next;
        *pp = seg;
        seg_path(ob, nums[i], path, sizeof(path));
        f = fopen(path, "r");
        if (f == NULL)
            continue;
        while ((len = getline(&line, &lcap, f)) > 0) {
            gw_outbox_entry_t *e;
            /* A torn last line was never acknowledged to anyone. */
            if (line[len - 1] != '\n' || (size_t)len > LINE_MAX_BYTES)
                continue;
            line[len - 1] = '\0';
            if (done_id(line) != 0)
                continue;
            e = calloc(1, sizeof(*e));
            if (e == NULL)
                break;
            if (parse_line(line, &e->m) != 0) {
                free(e);
                continue;
            }
            if (idset_has(&done, e->m.id)) {
                msg_free(&e->m);
                free(e);
                continue;
            }
            e->state = E_PENDING;
            e->seg = seg;
            seg->live++;
            elist_push(&ob->pending, e);
            loaded++;
        }
        free(line);
        fclose(f);
    }
    free(nums);
    free(done.v);
    /* Segments with nothing usable in them go now (never the current one: none yet). */
    for (segment_t *s = ob->segs, *next; s; s = next) {
        next = s->next;
        if (s->live == 0) {
            char path[1100];
            segment_t **pp = &ob->segs;
            while (*pp != s)
                pp = &(*pp)->next;
            *pp = next;
            seg_path(ob, s->num, path, sizeof(path));
            unlink(path);
            free(s);
        }
    }
    if (loaded)
        gw_warn("outbox", "%zu send(s) from an earlier run were not confirmed; sending them again",
                loaded);
}

/* ---- public API ------------------------------------------------------------- */

int gw_outbox_new(const char *dir, int sync, size_t max_waiting, gw_outbox_write_fn write, void *ud,
                  gw_outbox_t **out)
{
    gw_outbox_t *ob = calloc(1, sizeof(*ob));

    if (ob == NULL)
        return GW_ENOMEM;
    ob->write = write;
    ob->ud = ud;
    ob->max_waiting = max_waiting;
    ob->sync = sync;
    ob->fd = -1;
    if (dir != NULL && dir[0] != '\0') {
        int n = snprintf(ob->dir, sizeof(ob->dir), "%s/outbox", dir);
        if (n < 0 || (size_t)n >= sizeof(ob->dir)) {
            gw_error("outbox", "spool_dir is too long");
            free(ob);
            return GW_EIO;
        }
        mkdir(dir, 0700);
        if (mkdir(ob->dir, 0700) != 0 && errno != EEXIST) {
            gw_error("outbox", "cannot create %s: %s", ob->dir, strerror(errno));
            free(ob);
            return GW_EIO;
        }
        journal_load(ob);
    }
    *out = ob;
    return 0;
}

void gw_outbox_replay(gw_outbox_t *ob,
                      void (*fn)(void *ud, gw_outbox_entry_t *e, const gw_outbox_msg_t *m),
                      void *ud)
{
    /* fn may move entries out of the pending list: walk a snapshot of it. */
    size_t n = ob->pending.len, i = 0;
    gw_outbox_entry_t **all = n ? malloc(n * sizeof(*all)) : NULL;

    if (n && all == NULL)
        return;
    for (gw_outbox_entry_t *e = ob->pending.head; e && i < n; e = e->next)
        all[i++] = e;
    for (i = 0; i < n; i++)
        fn(ud, all[i], &all[i]->m);
    free(all);
}

gw_outbox_entry_t *gw_outbox_add(gw_outbox_t *ob, const gw_outbox_msg_t *m)
{
    gw_outbox_entry_t *e = calloc(1, sizeof(*e));

    if (e == NULL)
        return NULL;
    if (msg_copy(&e->m, m) != 0) {
        free(e);
        return NULL;
    }
    if (journal_append(ob, &e->m, &e->seg) != 0) {
        msg_free(&e->m);
        free(e);
        return NULL;
    }
    e->state = E_PENDING;
    elist_push(&ob->pending, e);
    return e;
}

const gw_outbox_msg_t *gw_outbox_msg(const gw_outbox_entry_t *e)
{
    return &e->m;
}

/* Writes ready entries, oldest first, until one cannot be written. */
static void write_ready(gw_outbox_t *ob)
{
    gw_outbox_entry_t *e;

    while ((e = ob->ready.head) != NULL) {
        uint64_t mark = 0;
        if (ob->write(ob->ud, &e->m, &mark) != 0)
            return;
        elist_remove(&ob->ready, e);
        e->state = E_WRITTEN;
        e->mark = mark;
        elist_push(&ob->written, e);
    }
}

void gw_outbox_ready(gw_outbox_t *ob, gw_outbox_entry_t *e)
{
    if (e->state != E_PENDING)
        return;
    elist_remove(&ob->pending, e);
    e->state = E_READY;
    elist_push(&ob->ready, e);
    /* Only the oldest ready send may go first; write_ready keeps that order. */
    write_ready(ob);
}

static void entry_free(gw_outbox_t *ob, gw_outbox_entry_t *e)
{
    segment_t *seg = e->seg;

    elist_remove(list_of(ob, e), e);
    msg_free(&e->m);
    free(e);
    if (seg) {
        seg->live--;
        seg_release(ob, seg);
    }
}

void gw_outbox_cancel(gw_outbox_t *ob, gw_outbox_entry_t *e)
{
    /*
     * Not journalled: after a crash right now the send would be written after
     * all (stored again first); a browser retry with the same cid is one
     * message with it, by the store's key.
     */
    entry_free(ob, e);
}

void gw_outbox_link_up(gw_outbox_t *ob)
{
    write_ready(ob);
}

void gw_outbox_link_down(gw_outbox_t *ob)
{
    for (gw_outbox_entry_t *e = ob->written.head; e; e = e->next) {
        e->state = E_READY;
        e->mark = 0;
    }
    elist_prepend_all(&ob->ready, &ob->written);
}

/*
 * Journals that the sends up to mark are done, so that a crash soon after does
 * not make the next start write them again (it would be harmless: the
 * companion drops a send-as it routed already; this only saves the work).
 * One write for all of them; not synced.
 */
static void journal_done(gw_outbox_t *ob, uint64_t mark)
{
    gw_sbuf_t b;

    if (ob->fd < 0 || ob->cur == NULL || ob->cur->live == 0)
        return;
    gw_sbuf_init(&b, 1u << 20);
    for (gw_outbox_entry_t *e = ob->written.head; e && e->mark <= mark; e = e->next)
        gw_sbuf_printf(&b, "{\"d\":\"%" PRIu64 "\"}\n", e->m.id);
    if (!b.overflow && b.len > 0) {
        if (write(ob->fd, b.data, b.len) == (ssize_t)b.len)
            ob->cur_bytes += b.len;
    }
    gw_sbuf_free(&b);
}

void gw_outbox_routed(gw_outbox_t *ob, uint64_t mark)
{
    journal_done(ob, mark);
    while (ob->written.head && ob->written.head->mark <= mark)
        entry_free(ob, ob->written.head);
}

size_t gw_outbox_len(const gw_outbox_t *ob)
{
    return ob->pending.len + ob->ready.len + ob->written.len;
}

size_t gw_outbox_waiting(const gw_outbox_t *ob)
{
    return ob->pending.len + ob->ready.len;
}

int gw_outbox_is_waiting(const gw_outbox_t *ob, uint64_t id)
{
    /* Linear, and only for a browser retrying a send: at most link_queue_max entries. */
    for (const gw_outbox_entry_t *e = ob->ready.head; e; e = e->next)
        if (e->m.id == id)
            return 1;
    for (const gw_outbox_entry_t *e = ob->pending.head; e; e = e->next)
        if (e->m.id == id)
            return 1;
    return 0;
}

int gw_outbox_full(const gw_outbox_t *ob)
{
    return gw_outbox_waiting(ob) >= ob->max_waiting;
}

void gw_outbox_free(gw_outbox_t *ob)
{
    elist_t *lists[3];

    if (ob == NULL)
        return;
    lists[0] = &ob->pending;
    lists[1] = &ob->ready;
    lists[2] = &ob->written;
    for (int i = 0; i < 3; i++)
        while (lists[i]->head) {
            gw_outbox_entry_t *e = lists[i]->head;
            elist_remove(lists[i], e);
            msg_free(&e->m);
            free(e);
        }
    if (ob->fd >= 0)
        close(ob->fd);
    while (ob->segs) {
        segment_t *s = ob->segs;
        ob->segs = s->next;
        free(s);
    }
    free(ob);
}
