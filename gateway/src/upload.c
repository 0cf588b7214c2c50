/*
 * upload.c - POST /upload (a picture, raw or multipart/form-data) and GET
 * /files/<32 hex>.<ext>.
 *
 * The body streams into a temporary file in upload_dir (never held in
 * memory); once complete, the file is read back and checked as a whole
 * (gw_http_image_check) before it is renamed to its public name. The quota
 * table is in memory: a restart forgets it (docs/security.md).
 */
#include "upload.h"
#include "gw.h"
#include "log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define QUOTA_BUCKETS  1024
#define SWEEP_EVERY_MS (10u * 60u * 1000u)
#define SWEEP_BATCH    256
/* A temporary file left by a crash is removed after this long. */
#define TMP_MAX_AGE_S 3600

typedef struct quota {
    struct quota *next;
    uint64_t min_start, day_start; /* ms: start of the current windows */
    unsigned min_count;
    uint64_t day_bytes;
    char user[];
} quota_t;

struct gw_upload {
    gw_http_t *h;
    gw_api_t *api;
    quota_t *quota[QUOTA_BUCKETS];
    DIR *sweep;          /* a sweep in progress, a batch per tick */
    uint64_t next_sweep; /* ms */
};

typedef struct upload {
    int fd;
    int multipart;
    int status; /* an error to answer, or 0 */
    const char *code, *reason;
    size_t bytes, seen; /* file bytes; body bytes */
    unsigned char head[16];
    size_t hlen;
    const char *mime, *ext;
    char user[128];
    char tmp[1100];
    gw_multipart_t mp;
} upload_t;

/* ---- quotas -------------------------------------------------------------------------- */

static unsigned qhash(const char *s)
{
    uint32_t x = 2166136261u;

    for (; *s; s++)
        x = (x ^ (unsigned char)*s) * 16777619u;
    return x % QUOTA_BUCKETS;
}

static quota_t *quota_of(gw_upload_t *m, const char *user, uint64_t now)
{
    quota_t **pp = &m->quota[qhash(user)], *q;

    for (q = *pp; q; q = q->next)
        if (strcmp(q->user, user) == 0)
            return q;
    q = calloc(1, sizeof(*q) + strlen(user) + 1);
    if (q == NULL)
        return NULL;
    strcpy(q->user, user);
    q->min_start = q->day_start = now;
    q->next = *pp;
    *pp = q;
    return q;
}

/* Rolls the windows forward. */
static void quota_roll(quota_t *q, uint64_t now)
{
    if (now - q->min_start >= 60000u) {
        q->min_start = now;
        q->min_count = 0;
    }
    if (now - q->day_start >= 86400000u) {
        q->day_start = now;
        q->day_bytes = 0;
    }
}

/* Forgets users whose windows have passed (keeps the table as small as the active users). */
static void quota_expire(gw_upload_t *m, uint64_t now)
{
    for (size_t i = 0; i < QUOTA_BUCKETS; i++)
        for (quota_t **pp = &m->quota[i]; *pp;) {
            quota_t *q = *pp;
            quota_roll(q, now);
            if (q->min_count == 0 && q->day_bytes == 0) {
                *pp = q->next;
                free(q);
            } else {
                pp = &q->next;
            }
        }
}

/* ---- the upload ------------------------------------------------------------------------ */

static void upload_drop(gw_http_req_t *r)
{
    upload_t *u = r->owner;

    if (u == NULL)
        return;
    if (u->fd >= 0) {
        close(u->fd);
        unlink(u->tmp);
    }
    free(u);
    r->owner = NULL;
}

static int upload_fail(upload_t *u, int status, const char *code, const char *reason)
{
    if (u->status == 0) {
        u->status = status;
        u->code = code;
        u->reason = reason;
    }
    return GW_EINVAL;
}

static int write_all(int fd, const unsigned char *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* File bytes, from the raw body or the multipart parser. */
static int upload_sink(void *ud, const unsigned char *data, size_t len)
{
    gw_http_req_t *r = ud;
    upload_t *u = r->owner;
    size_t max = (size_t)gw_http_env(r->h)->cfg->upload_max_bytes;

    if (u->status)
        return GW_EINVAL;
    if (u->bytes + len > max)
        return upload_fail(u, 413, "too_large", "the picture is larger than upload_max_bytes");
    if (u->mime == NULL) {
        size_t take = sizeof(u->head) - u->hlen < len ? sizeof(u->head) - u->hlen : len;
        memcpy(u->head + u->hlen, data, take);
        u->hlen += take;
        u->bytes += take;
        data += take;
        len -= take;
        if (u->hlen < 12)
            return 0;
        u->mime = gw_http_image_type(u->head, u->hlen, &u->ext);
        if (u->mime == NULL)
            return upload_fail(u, 415, "unsupported_type", "only JPEG, PNG, GIF and WebP pictures");
        if (write_all(u->fd, u->head, u->hlen) != 0)
            return upload_fail(u, 500, "io_error", "cannot write the file");
    }
    u->bytes += len;
    if (len && write_all(u->fd, data, len) != 0)
        return upload_fail(u, 500, "io_error", "cannot write the file");
    return 0;
}

static int upload_write(gw_http_req_t *r, unsigned status, const char *json, size_t len)
{
    gw_http_hdr_t hdrs[8];
    int n = gw_http_cors(r, hdrs, 0);

    hdrs[n++] = (gw_http_hdr_t){"x-content-type-options:", "nosniff"};
    hdrs[n].name = NULL;
    if (r->cb[0]) {
        /* An old page's hidden-frame form reads the answer as a script. */
        gw_sbuf_t b;
        int rc;
        gw_sbuf_init(&b, len + 128);
        gw_sbuf_puts(&b, "/**/");
        gw_sbuf_puts(&b, r->cb);
        gw_sbuf_puts(&b, "(");
        gw_sbuf_append(&b, json, len);
        gw_sbuf_puts(&b, ");\n");
        rc = gw_http_reply(r, 200, "application/javascript; charset=utf-8", hdrs, b.data, b.len);
        gw_sbuf_free(&b);
        return rc;
    }
    return gw_http_reply(r, status, "application/json; charset=utf-8", hdrs, json, len);
}

/* Answers given before the whole body was read say "connection: close" and close. */
static int upload_early(gw_http_req_t *r, unsigned status, const char *code, const char *reason)
{
    char buf[512];
    int n =
        snprintf(buf, sizeof(buf),
                 "{\"error\":{\"op\":\"error\",\"code\":\"%s\",\"reason\":\"%s\"}}", code, reason);

    r->conn_close = 1;
    upload_write(r, status, buf, (size_t)n);
    return -1;
}

static int upload_reply_error(gw_http_req_t *r)
{
    upload_t *u = r->owner;
    unsigned status = (unsigned)u->status;
    const char *code = u->code, *reason = u->reason;

    upload_drop(r);
    return upload_early(r, status, code, reason);
}

static int upload_begin(gw_http_req_t *r)
{
    gw_upload_t *m = r->ctx;
    const gw_config_t *cfg = gw_http_env(r->h)->cfg;
    char user[128], name[40], boundary[80];
    unsigned char rnd[16];
    uint64_t now = gw_now_ms();
    quota_t *q;
    upload_t *u;
    int authed;

    const char *cb = gw_http_arg(r, "callback");

    if (cb && !gw_http_callback_ok(cb, strlen(cb)))
        return upload_early(r, 400, "bad_callback", "invalid callback name");
    if (cb)
        snprintf(r->cb, sizeof(r->cb), "%s", cb);
    if (strcmp(r->path, "/upload") != 0)
        return upload_early(r, 404, "not_found", "no such path");
    if (cfg->upload_dir[0] == '\0')
        return upload_early(r, 404, "not_found", "uploads are disabled");
    if (r->method == GW_HTTP_OPTIONS) {
        gw_http_hdr_t hdrs[8];
        int n = gw_http_cors(r, hdrs, 0);
        hdrs[n++] = (gw_http_hdr_t){"access-control-allow-methods:", "POST, OPTIONS"};
        hdrs[n++] = (gw_http_hdr_t){"access-control-max-age:", "86400"};
        hdrs[n].name = NULL;
        return gw_http_reply(r, 204, NULL, hdrs, "", 0);
    }
    if (r->method != GW_HTTP_POST)
        return upload_early(r, 405, "method_not_allowed", "use POST");
    if (!gw_http_origin_ok(r, 0))
        return upload_early(r, 403, "bad_origin", "this page's origin is not allowed");
    authed = gw_api_token_user(m->api, gw_http_arg(r, "token"), user, sizeof(user)) == 0;
    if (!authed && r->clen >= 0 && r->clen <= cfg->upload_max_bytes) {
        /* Read (and drop) a small body first, so the client sees the answer. */
        u = calloc(1, sizeof(*u));
        if (u == NULL)
            return -1;
        u->fd = -1;
        upload_fail(u, 401, "bad_token", "unknown or expired token");
        r->owner = u;
        if (r->clen == 0)
            return upload_reply_error(r);
        return 0;
    }
    if (!authed)
        return upload_early(r, 401, "bad_token", "unknown or expired token");
    if (r->clen > (long long)cfg->upload_max_bytes +
                      (strncasecmp(r->ctype, "multipart/", 10) == 0 ? 65536 : 0))
        return upload_early(r, 413, "too_large", "the picture is larger than upload_max_bytes");
    q = quota_of(m, user, now);
    if (q == NULL)
        return upload_early(r, 500, "internal", "out of memory");
    quota_roll(q, now);
    if (q->min_count >= (unsigned)cfg->upload_rate_per_min)
        return upload_early(r, 429, "rate_limited", "too many uploads; wait a minute");
    if (q->day_bytes >= (uint64_t)cfg->upload_user_bytes_per_day)
        return upload_early(r, 429, "quota_exceeded", "the daily upload quota is used up");
    /* Counted when it starts: failed and aborted uploads cost a place too. */
    q->min_count++;
    u = calloc(1, sizeof(*u));
    if (u == NULL)
        return upload_early(r, 500, "internal", "out of memory");
    u->fd = -1;
    snprintf(u->user, sizeof(u->user), "%s", user);
    r->owner = u;
    if (strncasecmp(r->ctype, "multipart/", 10) == 0) {
        if (gw_http_multipart_boundary(r->ctype, boundary, sizeof(boundary)) != 0 ||
            gw_multipart_init(&u->mp, boundary, upload_sink, r) != 0) {
            upload_drop(r);
            return upload_early(r, 400, "bad_request", "malformed multipart/form-data");
        }
        u->multipart = 1;
    }
    if (gw_http_random(rnd, sizeof(rnd)) != 0) {
        upload_drop(r);
        return upload_early(r, 500, "internal", "no randomness");
    }
    for (size_t i = 0; i < sizeof(rnd); i++)
        snprintf(name + 2 * i, 3, "%02x", rnd[i]);
    snprintf(u->tmp, sizeof(u->tmp), "%s/.tmp-%s", cfg->upload_dir, name);
    u->fd = open(u->tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (u->fd < 0) {
        gw_warn("http", "upload: cannot create %s: %s", u->tmp, strerror(errno));
        upload_drop(r);
        return upload_early(r, 500, "io_error", "cannot store the file");
    }
    if (r->clen == 0)
        return r->ops->on_body(r, NULL, 0);
    return 0;
}

static const char *public_base(gw_http_req_t *r, char *buf, size_t len)
{
    const char *pub = gw_http_env(r->h)->cfg->public_url;

    if (pub[0]) {
        snprintf(buf, len, "%s", pub);
    } else {
        size_t n =
            strspn(r->host, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-:[]");
        if (r->host[0] == '\0' || r->host[n] != '\0')
            snprintf(buf, len, "http://localhost");
        else
            snprintf(buf, len, "http://%s", r->host);
    }
    for (size_t n = strlen(buf); n && buf[n - 1] == '/';)
        buf[--n] = '\0';
    return buf;
}

/* Reads the whole stored file back and checks its structure. */
static int file_is_picture(upload_t *u)
{
    unsigned char *buf;
    size_t got = 0;
    int ok;

    if (lseek(u->fd, 0, SEEK_SET) != 0)
        return 0;
    buf = malloc(u->bytes ? u->bytes : 1);
    if (buf == NULL)
        return 0;
    while (got < u->bytes) {
        ssize_t n = read(u->fd, buf + got, u->bytes - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    ok = got == u->bytes && gw_http_image_check(buf, got, u->mime);
    free(buf);
    return ok;
}

static int upload_body(gw_http_req_t *r, const unsigned char *in, size_t len)
{
    gw_upload_t *m = r->ctx;
    const gw_config_t *cfg = gw_http_env(r->h)->cfg;
    upload_t *u = r->owner;
    char name[64], path[1200], base[600], out[1000];
    quota_t *q;
    int n;

    if (u == NULL)
        return -1;
    if (in != NULL) {
        u->seen += len;
        if (!u->status) {
            int rc = u->multipart ? gw_multipart_feed(&u->mp, in, len) : upload_sink(r, in, len);
            if (rc != 0 && u->status == 0)
                upload_fail(u, 400, "bad_request", "malformed multipart/form-data");
        }
        if (u->status) {
            /*
             * Refused: the file goes now, the rest of a bounded body is read
             * and dropped so that the client sees the answer; past the bound
             * (413) the answer goes at once and the connection closes.
             */
            if (u->fd >= 0) {
                close(u->fd);
                unlink(u->tmp);
                u->fd = -1;
            }
            if (u->status == 413 || u->seen > (size_t)cfg->upload_max_bytes + 65536)
                return upload_reply_error(r);
        }
        return 0;
    }
    /* The body is complete. */
    if (u->multipart && gw_multipart_finish(&u->mp) != 0)
        upload_fail(u, 400, "bad_request", "no file part in multipart/form-data");
    if (!u->status && u->mime == NULL) {
        u->mime = gw_http_image_type(u->head, u->hlen, &u->ext);
        if (u->mime == NULL)
            upload_fail(u, 415, "unsupported_type", "only JPEG, PNG, GIF and WebP pictures");
        else if (write_all(u->fd, u->head, u->hlen) != 0)
            upload_fail(u, 500, "io_error", "cannot write the file");
    }
    if (!u->status && !file_is_picture(u))
        upload_fail(u, 415, "bad_picture", "the file is not a well-formed picture of its type");
    q = u->status ? NULL : quota_of(m, u->user, gw_now_ms());
    if (q != NULL && q->day_bytes + u->bytes > (uint64_t)cfg->upload_user_bytes_per_day)
        upload_fail(u, 429, "quota_exceeded", "the daily upload quota is used up");
    if (u->status)
        return upload_reply_error(r);
    if (close(u->fd) != 0) {
        u->fd = -1;
        unlink(u->tmp);
        upload_fail(u, 500, "io_error", "cannot write the file");
        return upload_reply_error(r);
    }
    u->fd = -1;
    /* .tmp-<32 hex> → <32 hex>.<ext> in the same directory. */
    snprintf(name, sizeof(name), "%s.%s", strrchr(u->tmp, '-') + 1, u->ext);
    snprintf(path, sizeof(path), "%s/%s", cfg->upload_dir, name);
    if (rename(u->tmp, path) != 0) {
        unlink(u->tmp);
        upload_fail(u, 500, "io_error", "cannot store the file");
        return upload_reply_error(r);
    }
    if (q)
        q->day_bytes += u->bytes;
    n = snprintf(out, sizeof(out),
                 "{\"url\":\"%s/files/%s\",\"kind\":\"image\",\"bytes\":%zu,\"type\":\"%s\"}",
                 public_base(r, base, sizeof(base)), name, u->bytes, u->mime);
    gw_info("http", "upload: stored %s (%zu bytes, %s) for %s", name, u->bytes, u->mime, u->user);
    upload_drop(r);
    return upload_write(r, 200, out, (size_t)n);
}

static void upload_gone(gw_http_req_t *r)
{
    upload_drop(r);
}

static const gw_http_ops_t upload_ops = {upload_body, upload_begin, NULL, upload_gone, 0};

/* ---- /files/ ------------------------------------------------------------------------------ */

static const char *mime_of_name(const char *name)
{
    const char *dot = strchr(name, '.');

    if (dot == NULL || dot - name != 32 || strspn(name, "0123456789abcdef") != 32)
        return NULL;
    if (strcmp(dot, ".jpg") == 0)
        return "image/jpeg";
    if (strcmp(dot, ".png") == 0)
        return "image/png";
    if (strcmp(dot, ".gif") == 0)
        return "image/gif";
    if (strcmp(dot, ".webp") == 0)
        return "image/webp";
    return NULL;
}

/* /files/<32 hex>.<ext>: only names this module generates. */
static int files_request(gw_http_req_t *r)
{
    const gw_config_t *cfg = gw_http_env(r->h)->cfg;
    const char *name = r->path + 7, *mime = NULL;
    char file[1200], disp[96];
    struct stat st;

    if (strncmp(r->path, "/files/", 7) == 0 && cfg->upload_dir[0])
        mime = mime_of_name(name);
    snprintf(file, sizeof(file), "%s/%s", cfg->upload_dir, name);
    if (r->method != GW_HTTP_GET || mime == NULL || stat(file, &st) != 0 || !S_ISREG(st.st_mode)) {
        gw_http_hdr_t nh[] = {{"x-content-type-options:", "nosniff"}, {NULL, NULL}};
        return gw_http_reply(r, 404, "text/plain", nh, "not found\n", 10);
    }
    snprintf(disp, sizeof(disp), "inline; filename=\"%s\"", name);
    {
        gw_http_hdr_t hdrs[] = {
            {"cache-control:", "public, max-age=31536000, immutable"},
            {"x-content-type-options:", "nosniff"},
            {"content-security-policy:", "default-src 'none'; sandbox"},
            {"content-disposition:", disp},
            {"cross-origin-resource-policy:", "cross-origin"},
            {NULL, NULL},
        };
        return gw_http_serve_file(r, file, mime, hdrs);
    }
}

static const gw_http_ops_t files_ops = {NULL, files_request, NULL, NULL, 0};

/* ---- expiry ---------------------------------------------------------------------------- */

/* Removes expired pictures and stale temporary files, a batch per call. */
static void sweep_batch(gw_upload_t *m)
{
    const gw_config_t *cfg = gw_http_env(m->h)->cfg;
    time_t now = time(NULL);
    struct dirent *de;
    int n = 0;

    while (n++ < SWEEP_BATCH && (de = readdir(m->sweep)) != NULL) {
        char path[1200];
        struct stat st;
        int tmp = strncmp(de->d_name, ".tmp-", 5) == 0;
        time_t max_age = tmp ? TMP_MAX_AGE_S : (time_t)cfg->upload_expiry_hours * 3600;
        if (!tmp && (cfg->upload_expiry_hours == 0 || mime_of_name(de->d_name) == NULL))
            continue;
        snprintf(path, sizeof(path), "%s/%s", cfg->upload_dir, de->d_name);
        if (lstat(path, &st) != 0 || !S_ISREG(st.st_mode) || now - st.st_mtime <= max_age)
            continue;
        if (unlink(path) == 0)
            gw_info("http", "upload: %s expired, removed", de->d_name);
    }
    if (de == NULL || n > SWEEP_BATCH) {
        if (de == NULL) {
            closedir(m->sweep);
            m->sweep = NULL;
        }
    }
}

static void upload_tick(void *ctx, uint64_t now)
{
    gw_upload_t *m = ctx;
    const gw_config_t *cfg = gw_http_env(m->h)->cfg;

    if (m->sweep) {
        sweep_batch(m);
        return;
    }
    if (now < m->next_sweep || cfg->upload_dir[0] == '\0')
        return;
    m->next_sweep = now + SWEEP_EVERY_MS;
    quota_expire(m, now);
    m->sweep = opendir(cfg->upload_dir);
}

int gw_upload_new(gw_http_t *h, gw_api_t *api, gw_upload_t **out)
{
    gw_upload_t *m = calloc(1, sizeof(*m));
    int rc;

    if (m == NULL)
        return GW_ENOMEM;
    m->h = h;
    m->api = api;
    /* The first sweep soon after start: files may have expired while the gateway was down. */
    m->next_sweep = gw_now_ms() + 1000;
    if ((rc = gw_http_route(h, "/upload", 1, &upload_ops, m)) != 0 ||
        (rc = gw_http_route(h, "/files", 0, &files_ops, m)) != 0 ||
        (rc = gw_http_on_tick(h, upload_tick, m)) != 0) {
        free(m);
        return rc;
    }
    *out = m;
    return 0;
}

void gw_upload_free(gw_upload_t *m)
{
    if (m == NULL)
        return;
    if (m->sweep)
        closedir(m->sweep);
    for (size_t i = 0; i < QUOTA_BUCKETS; i++)
        while (m->quota[i]) {
            quota_t *q = m->quota[i];
            m->quota[i] = q->next;
            free(q);
        }
    free(m);
}
