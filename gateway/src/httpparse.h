/*
 * httpparse.h - pure parsers for the HTTP transports (no I/O): query
 * arguments, form bodies, JSONP callback names, picture formats,
 * multipart/form-data, chunked request bodies, top-level JSON string members.
 * Every byte they see comes from a browser: each function bounds what it
 * reads and writes and reports malformed input as GW_EINVAL.
 */
#ifndef GW_HTTPPARSE_H
#define GW_HTTPPARSE_H

#include <stddef.h>
#include <stdint.h>

/*
 * 1 when name[0..len) is an acceptable JSONP callback name:
 * ^[A-Za-z_$][A-Za-z0-9_$]{0,63}(\.[A-Za-z_$][A-Za-z0-9_$]{0,63}){0,3}$
 */
int gw_http_callback_ok(const char *name, size_t len);

/*
 * The image type of a file from its first bytes (at least 12 are needed for
 * WebP): returns the MIME type ("image/jpeg", "image/png", "image/gif",
 * "image/webp") and sets *ext to the file extension without the dot, or
 * returns NULL for anything else.
 */
const char *gw_http_image_type(const unsigned char *b, size_t n, const char **ext);

/*
 * 1 when b[0..n) is, as a whole, a well-formed picture of type mime (from
 * gw_http_image_type): PNG chunks with valid CRCs from IHDR to IEND, GIF
 * blocks to the trailer, JPEG segments to EOI, WebP RIFF chunks, each
 * ending exactly at the end of the file. Bytes appended to a picture (an
 * HTML page after a PNG header, say) make it fail. 0 otherwise.
 */
int gw_http_image_check(const unsigned char *b, size_t n, const char *mime);

/*
 * Percent-decodes s[0..n) ('+' becomes a space) into out (size outlen, NUL
 * terminated). Returns the decoded length, or GW_EINVAL (bad escape, NUL
 * byte, invalid UTF-8) or GW_ERANGE (does not fit).
 */
int gw_http_urldecode(const char *s, size_t n, char *out, size_t outlen);

/*
 * Looks up name in a form-encoded string ("a=1&b=2"); decodes the first
 * value into out. Returns the value's length, GW_ENOTFOUND, or the errors of
 * gw_http_urldecode().
 */
int gw_http_form_get(const char *form, size_t n, const char *name, char *out, size_t outlen);

/*
 * Finds the top-level member name of the JSON object json[0..n) and, when it
 * is a string without escapes other than \" \\ \/, copies it into out.
 * Returns the length, GW_ENOTFOUND, or GW_EINVAL (not a plain string, does
 * not fit). Nested values are skipped correctly. Meant for the frames the
 * gateway itself encodes (op, cid, for, with).
 */
int gw_http_json_member(const char *json, size_t n, const char *name, char *out, size_t outlen);

/* The multipart/form-data boundary of a Content-Type value, into out. 0 or GW_EINVAL. */
int gw_http_multipart_boundary(const char *ctype, char *out, size_t outlen);

/*
 * A streaming multipart/form-data parser that extracts the first part with a
 * filename (the file of an upload form). Feed it the body in pieces of any
 * size; file bytes are passed to the sink as they are recognised.
 */
typedef int (*gw_multipart_sink_cb)(void *ud, const unsigned char *data, size_t len);

typedef struct gw_multipart {
    char delim[80]; /* "\r\n--" boundary */
    size_t dlen;
    int state;      /* see http.c */
    int in_file;    /* the current part is the file */
    int file_done;  /* the file part ended */
    size_t match;   /* bytes of delim matched so far (held back) */
    char hdr[1024]; /* current part's header block */
    size_t hlen;
    gw_multipart_sink_cb sink;
    void *ud;
} gw_multipart_t;

/* Starts a parser for boundary. Returns 0 or GW_EINVAL (boundary too long). */
int gw_multipart_init(gw_multipart_t *m, const char *boundary, gw_multipart_sink_cb sink, void *ud);

/*
 * Feeds len bytes. Returns 0, GW_EINVAL (malformed) or whatever negative
 * value the sink returned.
 */
int gw_multipart_feed(gw_multipart_t *m, const unsigned char *in, size_t len);

/* After the last byte: 0 when a complete file part was seen, GW_EINVAL otherwise. */
int gw_multipart_finish(const gw_multipart_t *m);

/*
 * A Transfer-Encoding: chunked request body decoder (libwebsockets 4.1 hands
 * chunked bodies over undecoded). gw_chunked_feed() passes data bytes to
 * sink and returns 1 once the last chunk and trailer were read, 0 when more
 * is expected, GW_EINVAL on malformed input, or the sink's negative value.
 */
typedef struct gw_chunked {
    int state;
    uint64_t left; /* data bytes left in the current chunk, or the size being read */
    unsigned line; /* bytes of the current size or trailer line */
} gw_chunked_t;

int gw_chunked_feed(gw_chunked_t *c, const unsigned char *in, size_t len, gw_multipart_sink_cb sink,
                    void *ud);

#endif
