/*
 * xmlstream.h - an incremental reader of one XMPP stream (XEP-0114 component
 * streams), on expat. Only xmlstream.c includes expat.h.
 *
 * The reader does no I/O: the caller feeds it the bytes it read, in pieces of
 * any size, and the reader calls back once for the stream header, once for
 * each complete top-level element (a stanza, <handshake/>, <stream:error/>)
 * and once for the end of the stream. Each stanza is handed over as a small
 * element tree built in an arena that the reader reuses: no allocation per
 * stanza once the arena has grown to the usual stanza size.
 *
 * Everything fed is hostile until checked. XMPP forbids DTDs, entity
 * declarations, processing instructions and comments (RFC 6120 section 11.1):
 * they end the stream ("restricted-xml"), so expat never expands an entity
 * beyond the five predefined ones. Bad UTF-8 and malformed XML end it too
 * ("not-well-formed"). A stanza past the size, depth or attribute limits is
 * skipped whole (counted, reported through on_skipped) and the stream goes on,
 * so one oversized message from a user cannot take the link down; what expat
 * has to buffer at once (one token) and the number of distinct names it keeps
 * for the life of a stream are bounded, and exceeding those ends the stream.
 */
#ifndef GW_XMLSTREAM_H
#define GW_XMLSTREAM_H

#include <stddef.h>

/*
 * One element of a stanza. All strings are NUL-terminated and valid until the
 * callback that received the tree returns.
 */
typedef struct gw_xml_el {
    const char *name;        /* local name */
    const char *ns;          /* namespace URI, "" when none */
    const char **attrs;      /* name, value, name, value, ..., NULL (unprefixed names as written;
                                prefixed ones as "<uri>\x01<local>") */
    struct gw_xml_el *child; /* first child element, or NULL */
    struct gw_xml_el *next;  /* next sibling element, or NULL */
    const char *text;        /* character data directly inside, concatenated ("" when none) */
    size_t text_len;
} gw_xml_el_t;

/* The value of the unprefixed attribute name of e, or NULL. */
const char *gw_xml_attr(const gw_xml_el_t *e, const char *name);

/* The first child element of e named name (any namespace when ns is NULL), or NULL. */
const gw_xml_el_t *gw_xml_child(const gw_xml_el_t *e, const char *name, const char *ns);

typedef struct gw_xmlstream gw_xmlstream_t;

typedef struct gw_xmlstream_cbs {
    /*
     * The stream header arrived (its attributes in header->attrs; it has no
     * children). Return 0 to go on, or a negative code to stop the reader:
     * gw_xmlstream_feed then returns that code.
     */
    int (*on_open)(void *ud, const gw_xml_el_t *header);
    /* A complete top-level element. Same return convention as on_open. */
    int (*on_stanza)(void *ud, const gw_xml_el_t *stanza);
    /* Optional: a top-level element was skipped; why is a static string. */
    void (*on_skipped)(void *ud, const char *name, const char *why);
    /* The peer closed the stream (</stream:stream>). Same return convention. */
    int (*on_close)(void *ud);
} gw_xmlstream_cbs_t;

typedef struct gw_xmlstream_limits {
    size_t max_stanza;     /* bytes of one top-level element before it is skipped */
    size_t max_token;      /* bytes expat may hold unparsed (one tag, one name) */
    unsigned max_depth;    /* nesting inside a stanza (the stanza itself is depth 1) */
    unsigned max_attrs;    /* attributes on one element */
    size_t max_name;       /* bytes of an element or attribute name, with its namespace */
    size_t max_attr_value; /* bytes of one attribute value */
    unsigned max_names;    /* distinct names and namespace prefixes in one stream */
} gw_xmlstream_limits_t;

/* The limits the link uses (1 MiB stanzas, depth 32, ...). */
void gw_xmlstream_default_limits(gw_xmlstream_limits_t *lim);

/*
 * Creates a reader. cbs is copied; lim may be NULL for the defaults. Returns 0
 * and *out, or GW_ENOMEM.
 */
int gw_xmlstream_new(const gw_xmlstream_cbs_t *cbs, void *ud, const gw_xmlstream_limits_t *lim,
                     gw_xmlstream_t **out);

/*
 * Parses len more bytes of the stream, calling back for what they complete.
 * Returns 0; GW_EINVAL when the stream is malformed, uses forbidden XML or
 * ends the stream with garbage; GW_ELIMIT when a stream-wide limit was
 * passed; GW_ENOMEM; or the negative code a callback returned. After an error
 * the reader accepts nothing more until gw_xmlstream_reset().
 */
int gw_xmlstream_feed(gw_xmlstream_t *x, const char *data, size_t len);

/*
 * After a failed feed: a one-line description (static or owned by x, valid
 * until the next call on x) and the XMPP stream error condition that fits
 * ("not-well-formed", "restricted-xml", "policy-violation", ...).
 */
const char *gw_xmlstream_error(const gw_xmlstream_t *x);
const char *gw_xmlstream_condition(const gw_xmlstream_t *x);

/* Forgets everything and waits for a new stream header (a new connection). 0 or GW_ENOMEM. */
int gw_xmlstream_reset(gw_xmlstream_t *x);

/* Frees the reader. Never from inside one of its callbacks. NULL is ignored. */
void gw_xmlstream_free(gw_xmlstream_t *x);

#endif
