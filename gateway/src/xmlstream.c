/*
 * xmlstream.c - the XMPP stream reader on expat (see xmlstream.h).
 *
 * expat runs with namespace processing and "triplets": an element's name
 * arrives as "<uri>\x01<local>\x01<prefix>", which identifies the qualified
 * name expat keeps in its tables for the life of the parser. Those tables
 * grow with every distinct name, so the reader counts distinct names (their
 * 64-bit hashes in a small open-addressing set) and ends a stream that uses
 * too many; a new connection gets a new parser.
 *
 * A stanza's tree lives in an arena of blocks. The first block is kept from
 * stanza to stanza, so the usual stanza costs no allocation at all; larger
 * blocks are freed once the stanza has been handled.
 */
#include "xmlstream.h"
#include "gw.h"

#include <expat.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define SEP         '\x01'
#define NS_STREAMS  "http://etherx.jabber.org/streams"
#define ARENA_FIRST 16384

typedef struct blk {
    struct blk *next;
    size_t cap, used;
    max_align_t data[]; /* cap bytes */
} blk_t;

typedef struct frame {
    gw_xml_el_t *el;
    gw_xml_el_t *last; /* last child element, for appending in order */
} frame_t;

struct gw_xmlstream {
    XML_Parser p;
    gw_xmlstream_cbs_t cbs;
    void *ud;
    gw_xmlstream_limits_t lim;

    /* Arena of the current stanza. */
    blk_t *first, *extra;
    size_t arena_used, arena_limit;

    /* Text of the innermost open element, not yet copied into the arena. */
    char *scratch;
    size_t scratch_len, scratch_cap;

    frame_t *stack; /* [0] is the stanza; max_depth entries */
    unsigned depth; /* open elements, the stream header included */
    unsigned built; /* entries of stack in use */
    long long stanza_start;
    const char *skip; /* why the current stanza is being skipped, or NULL */
    const char *skip_name;
    char skip_name_buf[64];

    long long fed;      /* bytes given to expat */
    long long progress; /* end of the last event expat reported */

    uint64_t *names; /* hashes of the distinct names seen; 0 = empty slot */
    size_t names_cap, names_used;

    int err; /* 0, or the code every later feed returns */
    const char *errmsg;
    const char *cond;
};

/* ---- tree lookups ---------------------------------------------------- */

const char *gw_xml_attr(const gw_xml_el_t *e, const char *name)
{
    for (const char **a = e->attrs; a[0] != NULL; a += 2)
        if (strcmp(a[0], name) == 0)
            return a[1];
    return NULL;
}

const gw_xml_el_t *gw_xml_child(const gw_xml_el_t *e, const char *name, const char *ns)
{
    for (const gw_xml_el_t *c = e->child; c != NULL; c = c->next)
        if (strcmp(c->name, name) == 0 && (ns == NULL || strcmp(c->ns, ns) == 0))
            return c;
    return NULL;
}

/* ---- arena ------------------------------------------------------------- */

static void *arena_alloc(gw_xmlstream_t *x, size_t n)
{
    blk_t *b = x->extra ? x->extra : x->first;
    size_t need = (n + 15u) & ~(size_t)15u;

    if (need < n || x->arena_used + need > x->arena_limit)
        return NULL;
    if (b->cap - b->used < need) {
        size_t cap = need > ARENA_FIRST * 4 ? need : ARENA_FIRST * 4;
        b = malloc(sizeof(*b) + cap);
        if (b == NULL)
            return NULL;
        b->cap = cap;
        b->used = 0;
        b->next = x->extra;
        x->extra = b;
    }
    x->arena_used += need;
    b->used += need;
    return (char *)b->data + b->used - need;
}

static char *arena_strndup(gw_xmlstream_t *x, const char *s, size_t n)
{
    char *d = arena_alloc(x, n + 1);

    if (d != NULL) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

/* Forgets the stanza: keeps the first block, frees the others. */
static void arena_reset(gw_xmlstream_t *x)
{
    while (x->extra != NULL) {
        blk_t *b = x->extra;
        x->extra = b->next;
        free(b);
    }
    x->first->used = 0;
    x->arena_used = 0;
    x->scratch_len = 0;
    x->built = 0;
    x->skip = NULL;
}

/* ---- failing ------------------------------------------------------------ */

static void fail(gw_xmlstream_t *x, int err, const char *cond, const char *msg)
{
    if (x->err != 0)
        return;
    x->err = err;
    x->cond = cond;
    x->errmsg = msg;
    XML_StopParser(x->p, XML_FALSE);
}

/* Where expat is: everything before the end of this event has been parsed. */
static void note_progress(gw_xmlstream_t *x)
{
    x->progress = (long long)XML_GetCurrentByteIndex(x->p) + XML_GetCurrentByteCount(x->p);
}

/* ---- distinct names ------------------------------------------------------ */

static uint64_t hash_name(const char *a, const char *b)
{
    uint64_t h = 0xcbf29ce484222325ull;

    for (; *a; a++)
        h = (h ^ (unsigned char)*a) * 0x100000001b3ull;
    if (b != NULL)
        for (h = (h ^ 0xffu) * 0x100000001b3ull; *b; b++)
            h = (h ^ (unsigned char)*b) * 0x100000001b3ull;
    return h ? h : 1;
}

/* Counts a name expat will remember; 0, or -1 (stream failed) past max_names. */
static int count_name(gw_xmlstream_t *x, uint64_t h)
{
    size_t mask = x->names_cap - 1;
    size_t i = (size_t)h & mask;

    while (x->names[i] != 0) {
        if (x->names[i] == h)
            return 0;
        i = (i + 1) & mask;
    }
    if (x->names_used >= x->lim.max_names) {
        fail(x, GW_ELIMIT, "policy-violation", "too many distinct element or attribute names");
        return -1;
    }
    x->names[i] = h;
    x->names_used++;
    return 0;
}

/* ---- expat handlers ------------------------------------------------------ */

/* Splits "<uri>\x01<local>[\x01<prefix>]" (or a plain "<local>"). */
static void split_name(const char *full, const char **uri, size_t *urilen, const char **local,
                       size_t *locallen)
{
    const char *s1 = strchr(full, SEP);

    if (s1 == NULL) {
        *uri = "";
        *urilen = 0;
        *local = full;
        *locallen = strlen(full);
        return;
    }
    *uri = full;
    *urilen = (size_t)(s1 - full);
    *local = s1 + 1;
    {
        const char *s2 = strchr(*local, SEP);
        *locallen = s2 ? (size_t)(s2 - *local) : strlen(*local);
    }
}

static void start_skip(gw_xmlstream_t *x, const char *why)
{
    if (x->skip == NULL)
        x->skip = why;
}

/* Copies the pending text into the innermost element. 0, or -1 when the arena is full. */
static int commit_text(gw_xmlstream_t *x)
{
    gw_xml_el_t *e;
    char *t;

    if (x->scratch_len == 0 || x->built == 0)
        return 0;
    e = x->stack[x->built - 1].el;
    t = arena_alloc(x, e->text_len + x->scratch_len + 1);
    if (t == NULL)
        return -1;
    memcpy(t, e->text, e->text_len);
    memcpy(t + e->text_len, x->scratch, x->scratch_len);
    e->text_len += x->scratch_len;
    t[e->text_len] = '\0';
    e->text = t;
    x->scratch_len = 0;
    return 0;
}

/* Builds an element from expat's name and attributes; NULL when a limit says skip. */
static gw_xml_el_t *build(gw_xmlstream_t *x, const char *name, const char **atts)
{
    const char *uri, *local;
    size_t urilen, locallen, n = 0;
    gw_xml_el_t *e;
    const char **a;

    while (atts[n] != NULL)
        n += 2;
    if (n / 2 > x->lim.max_attrs) {
        start_skip(x, "too many attributes");
        return NULL;
    }
    for (size_t i = 0; i < n; i += 2)
        if (strlen(atts[i]) > x->lim.max_name || strlen(atts[i + 1]) > x->lim.max_attr_value) {
            start_skip(x, "attribute name or value too long");
            return NULL;
        }
    split_name(name, &uri, &urilen, &local, &locallen);
    e = arena_alloc(x, sizeof(*e));
    a = arena_alloc(x, (n + 1) * sizeof(*a));
    if (e == NULL || a == NULL)
        goto full;
    e->ns = arena_strndup(x, uri, urilen);
    e->name = arena_strndup(x, local, locallen);
    if (e->ns == NULL || e->name == NULL)
        goto full;
    for (size_t i = 0; i < n; i++)
        if ((a[i] = arena_strndup(x, atts[i], strlen(atts[i]))) == NULL)
            goto full;
    a[n] = NULL;
    e->attrs = a;
    e->child = e->next = NULL;
    e->text = "";
    e->text_len = 0;
    return e;
full:
    start_skip(x, "stanza too large");
    return NULL;
}

static void on_start(void *ud, const XML_Char *name, const XML_Char **atts)
{
    gw_xmlstream_t *x = ud;
    unsigned d = x->depth;

    if (x->err)
        return;
    note_progress(x);
    /* Every name counts, long or not: expat keeps each one for the life of the stream. */
    if (count_name(x, hash_name(name, NULL)) != 0)
        return;
    for (size_t i = 0; atts[i] != NULL; i += 2)
        if (count_name(x, hash_name(atts[i], NULL)) != 0)
            return;

    if (d == 0) {
        gw_xml_el_t *h;
        const char *uri, *local;
        size_t urilen, locallen;
        int rc;
        split_name(name, &uri, &urilen, &local, &locallen);
        if (urilen != sizeof(NS_STREAMS) - 1 || memcmp(uri, NS_STREAMS, urilen) != 0 ||
            locallen != 6 || memcmp(local, "stream", 6) != 0) {
            fail(x, GW_EINVAL, "invalid-namespace",
                 "the stream does not start with a stream header");
            return;
        }
        arena_reset(x);
        h = build(x, name, atts);
        if (h == NULL) {
            fail(x, GW_ELIMIT, "policy-violation", "stream header over the limits");
            return;
        }
        x->depth = 1;
        rc = x->cbs.on_open(x->ud, h);
        arena_reset(x);
        if (rc != 0)
            fail(x, rc, "undefined-condition", "stopped by the stream header's handler");
        return;
    }

    if (d == 1) {
        /* A new top-level element. */
        arena_reset(x);
        x->stanza_start = (long long)XML_GetCurrentByteIndex(x->p);
        {
            const char *uri, *local;
            size_t urilen, locallen;
            split_name(name, &uri, &urilen, &local, &locallen);
            if (locallen >= sizeof(x->skip_name_buf))
                locallen = sizeof(x->skip_name_buf) - 1;
            memcpy(x->skip_name_buf, local, locallen);
            x->skip_name_buf[locallen] = '\0';
        }
    }
    x->depth = d + 1;
    if (x->skip != NULL)
        return;
    if (d > x->lim.max_depth) {
        start_skip(x, "nested too deep");
        return;
    }
    if (strlen(name) > x->lim.max_name) {
        start_skip(x, "element name too long");
        return;
    }
    if (x->progress - x->stanza_start > (long long)x->lim.max_stanza) {
        start_skip(x, "stanza too large");
        return;
    }
    if (commit_text(x) != 0) {
        start_skip(x, "stanza too large");
        return;
    }
    {
        gw_xml_el_t *e = build(x, name, atts);
        if (e == NULL)
            return;
        if (x->built > 0) {
            frame_t *f = &x->stack[x->built - 1];
            if (f->last)
                f->last->next = e;
            else
                f->el->child = e;
            f->last = e;
        }
        x->stack[x->built].el = e;
        x->stack[x->built].last = NULL;
        x->built++;
    }
}

static void on_end(void *ud, const XML_Char *name)
{
    gw_xmlstream_t *x = ud;
    int rc = 0;

    GW_UNUSED(name);
    if (x->err)
        return;
    note_progress(x);
    if (x->depth == 1) {
        x->depth = 0;
        if (x->cbs.on_close != NULL && (rc = x->cbs.on_close(x->ud)) != 0)
            fail(x, rc, "undefined-condition", "stopped by the stream end's handler");
        return;
    }
    x->depth--;
    if (x->skip == NULL) {
        if (x->progress - x->stanza_start > (long long)x->lim.max_stanza)
            start_skip(x, "stanza too large");
        else if (commit_text(x) != 0)
            start_skip(x, "stanza too large");
        else if (x->built > 0)
            x->built--;
    }
    if (x->depth > 1)
        return;
    /* A top-level element is complete. */
    if (x->skip != NULL) {
        if (x->cbs.on_skipped != NULL)
            x->cbs.on_skipped(x->ud, x->skip_name_buf, x->skip);
    } else {
        rc = x->cbs.on_stanza(x->ud, x->stack[0].el);
    }
    arena_reset(x);
    if (rc != 0)
        fail(x, rc, "undefined-condition", "stopped by a stanza's handler");
}

static int is_space(const char *s, int len)
{
    for (int i = 0; i < len; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n')
            return 0;
    return 1;
}

static void on_text(void *ud, const XML_Char *s, int len)
{
    gw_xmlstream_t *x = ud;
    size_t n = (size_t)len;

    if (x->err)
        return;
    note_progress(x);
    if (x->depth <= 1) {
        /* Between stanzas only whitespace (keep-alives) may come. */
        if (!is_space(s, len))
            fail(x, GW_EINVAL, "bad-format", "text between stanzas");
        return;
    }
    if (x->skip != NULL)
        return;
    if (x->scratch_len + n > x->lim.max_stanza) {
        start_skip(x, "stanza too large");
        return;
    }
    if (x->scratch_len + n > x->scratch_cap) {
        size_t cap = x->scratch_cap ? x->scratch_cap : 4096;
        char *p;
        while (cap < x->scratch_len + n)
            cap *= 2;
        p = realloc(x->scratch, cap);
        if (p == NULL) {
            start_skip(x, "out of memory");
            return;
        }
        x->scratch = p;
        x->scratch_cap = cap;
    }
    memcpy(x->scratch + x->scratch_len, s, n);
    x->scratch_len += n;
}

static void on_ns_decl(void *ud, const XML_Char *prefix, const XML_Char *uri)
{
    gw_xmlstream_t *x = ud;

    GW_UNUSED(uri);
    if (x->err)
        return;
    /* expat remembers every prefix for the life of the parser. */
    if (prefix != NULL && count_name(x, hash_name("xmlns:", prefix)) != 0)
        return;
}

static void on_doctype(void *ud, const XML_Char *name, const XML_Char *sysid, const XML_Char *pubid,
                       int has_internal_subset)
{
    GW_UNUSED(name);
    GW_UNUSED(sysid);
    GW_UNUSED(pubid);
    GW_UNUSED(has_internal_subset);
    fail(ud, GW_EINVAL, "restricted-xml", "a DTD in the stream");
}

static void on_entity(void *ud, const XML_Char *name, int is_param, const XML_Char *value,
                      int value_len, const XML_Char *base, const XML_Char *sysid,
                      const XML_Char *pubid, const XML_Char *notation)
{
    GW_UNUSED(name);
    GW_UNUSED(is_param);
    GW_UNUSED(value);
    GW_UNUSED(value_len);
    GW_UNUSED(base);
    GW_UNUSED(sysid);
    GW_UNUSED(pubid);
    GW_UNUSED(notation);
    fail(ud, GW_EINVAL, "restricted-xml", "an entity declaration in the stream");
}

static void on_pi(void *ud, const XML_Char *target, const XML_Char *data)
{
    GW_UNUSED(target);
    GW_UNUSED(data);
    fail(ud, GW_EINVAL, "restricted-xml", "a processing instruction in the stream");
}

static void on_comment(void *ud, const XML_Char *data)
{
    GW_UNUSED(data);
    fail(ud, GW_EINVAL, "restricted-xml", "a comment in the stream");
}

/* ---- public API -------------------------------------------------------- */

void gw_xmlstream_default_limits(gw_xmlstream_limits_t *lim)
{
    lim->max_stanza = 1u << 20;
    lim->max_token = 2u << 20;
    lim->max_depth = 32;
    lim->max_attrs = 64;
    lim->max_name = 1024;
    lim->max_attr_value = 64u << 10;
    lim->max_names = 4096;
}

static int make_parser(gw_xmlstream_t *x)
{
    /* The encoding given here overrides any the stream declares: XMPP is UTF-8. */
    x->p = XML_ParserCreateNS("UTF-8", SEP);
    if (x->p == NULL)
        return GW_ENOMEM;
    XML_SetReturnNSTriplet(x->p, 1);
    XML_SetUserData(x->p, x);
    XML_SetElementHandler(x->p, on_start, on_end);
    XML_SetCharacterDataHandler(x->p, on_text);
    XML_SetStartNamespaceDeclHandler(x->p, on_ns_decl);
    XML_SetStartDoctypeDeclHandler(x->p, on_doctype);
    XML_SetEntityDeclHandler(x->p, on_entity);
    XML_SetProcessingInstructionHandler(x->p, on_pi);
    XML_SetCommentHandler(x->p, on_comment);
    /* No external entity is ever fetched: with no DTD allowed there is none to refer to. */
    XML_SetParamEntityParsing(x->p, XML_PARAM_ENTITY_PARSING_NEVER);
    return 0;
}

int gw_xmlstream_new(const gw_xmlstream_cbs_t *cbs, void *ud, const gw_xmlstream_limits_t *lim,
                     gw_xmlstream_t **out)
{
    gw_xmlstream_t *x = calloc(1, sizeof(*x));
    size_t cap = 16;

    if (x == NULL)
        return GW_ENOMEM;
    x->cbs = *cbs;
    x->ud = ud;
    if (lim)
        x->lim = *lim;
    else
        gw_xmlstream_default_limits(&x->lim);
    if (x->lim.max_depth < 1)
        x->lim.max_depth = 1;
    if (x->lim.max_names < 8)
        x->lim.max_names = 8;
    while (cap < (size_t)x->lim.max_names * 2)
        cap *= 2;
    x->names_cap = cap;
    /* Room for the tree's overhead (element structs, attribute arrays) over the bytes. */
    x->arena_limit = x->lim.max_stanza * 4 + 65536;
    x->names = calloc(cap, sizeof(*x->names));
    x->stack = calloc(x->lim.max_depth + 1, sizeof(*x->stack));
    x->first = malloc(sizeof(*x->first) + ARENA_FIRST);
    if (x->names == NULL || x->stack == NULL || x->first == NULL)
        goto fail;
    x->first->cap = ARENA_FIRST;
    x->first->used = 0;
    x->first->next = NULL;
    if (make_parser(x) != 0)
        goto fail;
    *out = x;
    return 0;
fail:
    gw_xmlstream_free(x);
    return GW_ENOMEM;
}

int gw_xmlstream_feed(gw_xmlstream_t *x, const char *data, size_t len)
{
    while (x->err == 0 && len > 0) {
        int n = len > (size_t)INT_MAX / 2 ? INT_MAX / 2 : (int)len;
        if (XML_Parse(x->p, data, n, 0) != XML_STATUS_OK && x->err == 0) {
            enum XML_Error code = XML_GetErrorCode(x->p);
            const char *cond = "not-well-formed";
            if (code == XML_ERROR_UNDEFINED_ENTITY || code == XML_ERROR_RECURSIVE_ENTITY_REF ||
                code == XML_ERROR_EXTERNAL_ENTITY_HANDLING)
                cond = "restricted-xml";
            else if (code == XML_ERROR_INCORRECT_ENCODING || code == XML_ERROR_UNKNOWN_ENCODING)
                cond = "unsupported-encoding";
            x->err = GW_EINVAL;
            x->cond = cond;
            x->errmsg = XML_ErrorString(code);
            if (code == XML_ERROR_NO_MEMORY) {
                x->err = GW_ENOMEM;
                x->cond = "internal-server-error";
            }
        }
        x->fed += n;
        data += n;
        len -= (size_t)n;
        /* What expat holds unparsed is one token: bound it (a tag without its end). */
        if (x->err == 0 && x->fed - x->progress > (long long)x->lim.max_token)
            fail(x, GW_ELIMIT, "policy-violation", "a single XML token over the size limit");
    }
    return x->err;
}

const char *gw_xmlstream_error(const gw_xmlstream_t *x)
{
    return x->errmsg ? x->errmsg : "no error";
}

const char *gw_xmlstream_condition(const gw_xmlstream_t *x)
{
    return x->cond ? x->cond : "undefined-condition";
}

int gw_xmlstream_reset(gw_xmlstream_t *x)
{
    if (x->p != NULL)
        XML_ParserFree(x->p);
    x->p = NULL;
    arena_reset(x);
    memset(x->names, 0, x->names_cap * sizeof(*x->names));
    x->names_used = 0;
    x->depth = 0;
    x->fed = x->progress = 0;
    x->err = 0;
    x->errmsg = x->cond = NULL;
    if (make_parser(x) != 0) {
        x->err = GW_ENOMEM;
        x->cond = "internal-server-error";
        x->errmsg = "out of memory";
        return GW_ENOMEM;
    }
    return 0;
}

void gw_xmlstream_free(gw_xmlstream_t *x)
{
    if (x == NULL)
        return;
    if (x->p != NULL)
        XML_ParserFree(x->p);
    if (x->first != NULL)
        arena_reset(x);
    free(x->first);
    free(x->names);
    free(x->stack);
    free(x->scratch);
    free(x);
}
