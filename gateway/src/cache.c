/*
 * cache.c - hot state in Redis: hiredis async on the shared libuv loop.
 *
 * The contract is in cache.h and the data model in docs/redis.md. What this
 * file adds, and why:
 *
 * Atomicity. Every chat-list change is one Lua script (EVALSHA), so Redis
 * applies it whole or not at all and a FLUSHALL or an expiry between two
 * commands can never leave half a list behind a validity marker.
 *
 * The validity marker. imgw:valid:{user} holds "<generation>:<n>", not just
 * "1": the generation must equal imgw:gen, and n must equal the size of the
 * user's order, chats and unread keys. The generation lets this process
 * invalidate every cached list with one SET when it knows it lost a write (a
 * dropped update would otherwise leave a list that looks whole but is stale);
 * n catches a key lost to memory eviction without the others.
 *
 * The fill race. The router reads PostgreSQL after a miss and writes the
 * answer back with gw_cache_put_chats(). A message stored in between would be
 * missing from that answer. So every update also stamps imgw:dirty:{user}
 * with the message id (60 s TTL); a miss remembers the stamp it saw, and the
 * put is refused when the stamp has changed since (or, without a remembered
 * stamp, when any stamp exists). See docs/redis.md, "Filling a list".
 *
 * The connection. redisconn.c resolves, connects, watches for timeouts
 * and reconnects; this file sends the handshake (SELECT and SCRIPT LOAD)
 * each time the connection comes up.
 */
#include "cache.h"
#include "gw.h"
#include "log.h"
#include "redisconn.h"

#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KEY_MAX            640   /* one key; a longer user id is simply not cached */
#define PENDING_MAX        10000 /* outstanding commands before writes drop, reads fail */
#define GET_MAX            1000  /* largest limit a read asks Redis for */
#define PUT_MAX            5000  /* a larger list is not cached (one script call each) */
#define ENTRY_MAX          4096  /* longest entry JSON accepted back from Redis */
#define PREVIEW_MAX        200   /* characters of the body kept in an entry, as in the schema */
#define CONNECT_TIMEOUT_MS 3000  /* connect + handshake */
#define COMMAND_TIMEOUT_MS 5000  /* no reply while commands are outstanding: drop */
#define FILL_WINDOW_S      60    /* a fill (miss, PostgreSQL read, put) must finish in this time */
#define FILL_SLOTS         1024
#define MARK_MAX           64
#define ID_DIGITS          20 /* ids as zero-padded decimal strings in scripts */

enum { S_UPDATE, S_PUT, S_GET, S_READ, S_COUNT };

/* The dirty stamp a miss saw for a user, for the put that follows it. */
typedef struct fill {
    uint64_t hash;  /* FNV-1a of the user; 0 = empty */
    uint64_t at_ms; /* uv_now() of the miss */
    char mark[MARK_MAX];
} fill_t;

typedef struct get_req {
    gw_cache_t *c;
    gw_cache_chats_cb cb;
    void *ud;
    uint64_t user_hash;
    char valid_key[]; /* dropped when the list turns out malformed */
} get_req_t;

struct gw_cache {
    uv_loop_t *loop;
    int db;
    int ttl_s;
    int recent;

    gw_redisconn_t *conn; /* NULL when the cache is disabled */
    int hs_left, hs_failed;
    char sha[S_COUNT][41];
    int need_bump; /* a guarded write was lost: change imgw:gen before trusting lists */

    uint64_t rnd;       /* xorshift state: tokens */
    unsigned long tseq; /* token sequence */
    fill_t fills[FILL_SLOTS];
    gw_cache_stats_t st;
};

/* Write callbacks get one of these as privdata. */
static char guarded_tag;   /* a chat-list write: losing it makes lists stale */
static char unguarded_tag; /* imgw:web and similar: losing it is only counted */

/* ---- Lua scripts --------------------------------------------------------
 *
 * KEYS layout for one user (get, put, read): valid, chats, order, marks,
 * unids, gen, dirty. Message ids travel as 20-digit zero-padded decimal
 * strings: Lua numbers are doubles and cannot hold them exactly, and padded
 * strings compare (and sort in sorted sets by member) in id order.
 *
 *   order  ZSET, every score 0, member "<last id> <peer>": newest last by member
 *   marks  HASH peer -> "<last id>:<read marker>"
 *   unids  ZSET, every score 0, member "<peer> <id>": the peer's unread messages
 *
 * valid_gen() answers the generation, the entry count and the unread id count
 * when the list is valid, else nil. whole() checks that every key still holds
 * what the marker says (eviction can take one key alone) and drops the marker
 * when not.
 */
#define LUA_COMMON                                                                                 \
    "local function valid_gen(kv, kg)\n"                                                           \
    "  local v = redis.call('GET', kv)\n"                                                          \
    "  if not v then return nil end\n"                                                             \
    "  local g, n, u = string.match(v, '^(.+):(%d+):(%d+)$')\n"                                    \
    "  local cur = redis.call('GET', kg)\n"                                                        \
    "  if not g or not cur or g ~= cur then return nil end\n"                                      \
    "  return g, tonumber(n), tonumber(u)\n"                                                       \
    "end\n"                                                                                        \
    "local function whole(kv, kc, ko, km, ku, n, u)\n"                                             \
    "  if redis.call('HLEN', kc) ~= n or redis.call('ZCARD', ko) ~= n\n"                           \
    "     or redis.call('HLEN', km) ~= n or redis.call('ZCARD', ku) ~= u then\n"                   \
    "    redis.call('DEL', kv)\n"                                                                  \
    "    return false\n"                                                                           \
    "  end\n"                                                                                      \
    "  return true\n"                                                                              \
    "end\n"                                                                                        \
    "local function later(a, b)\n"                                                                 \
    "  if #a ~= #b then return #a > #b end\n"                                                      \
    "  for i = 1, #a do\n"                                                                         \
    "    local x, y = string.byte(a, i), string.byte(b, i)\n"                                      \
    "    if x ~= y then return x > y end\n"                                                        \
    "  end\n"                                                                                      \
    "  return false\n"                                                                             \
    "end\n"                                                                                        \
    "local function drop_read(ku, peer, id)\n"                                                     \
    "  redis.call('ZREMRANGEBYLEX', ku, '[' .. peer .. ' ', '[' .. peer .. ' ' .. id)\n"           \
    "end\n"

/*
 * on_message. KEYS: gen, recent, then valid, chats, order, marks, unids,
 * dirty for the sender (3..8) and the recipient (9..14). ARGV: ttl,
 * recent_max, frame ('' = none), id (20 digits), fill window, stamp, most
 * unread ids a list may hold, then peer and entry for the sender's side (8, 9)
 * and the recipient's (10, 11).
 *
 * The sender has read everything up to the message (the schema moves the
 * sender's marker too); the recipient has one more unread message unless the
 * marker is already past it. Unread messages are a set of ids, so a message
 * applied twice, or after a read that covers it, changes nothing.
 */
static const char script_update[] =
    LUA_COMMON "local function side(k, a, own)\n"
               "  redis.call('SET', KEYS[k+5], ARGV[6], 'EX', ARGV[5])\n"
               "  local g, n, u = valid_gen(KEYS[k], KEYS[1])\n"
               "  if not g then return 0 end\n"
               "  if not whole(KEYS[k], KEYS[k+1], KEYS[k+2], KEYS[k+3], KEYS[k+4], n, u) then\n"
               "    return 0\n"
               "  end\n"
               "  local peer, id = ARGV[a], ARGV[4]\n"
               "  local m = redis.call('HGET', KEYS[k+3], peer)\n"
               "  local last, rd = '', '00000000000000000000'\n"
               "  if m then\n"
               "    last, rd = string.sub(m, 1, 20), string.sub(m, 22, 41)\n"
               "  else\n"
               "    n = n + 1\n"
               "  end\n"
               "  if later(id, last) then\n"
               "    if m then redis.call('ZREM', KEYS[k+2], last .. ' ' .. peer) end\n"
               "    redis.call('ZADD', KEYS[k+2], 0, id .. ' ' .. peer)\n"
               "    redis.call('HSET', KEYS[k+1], peer, ARGV[a+1])\n"
               "    last = id\n"
               "  end\n"
               "  if own then\n"
               "    if later(id, rd) then\n"
               "      rd = id\n"
               "      drop_read(KEYS[k+4], peer, id)\n"
               "    end\n"
               "  elseif later(id, rd) then\n"
               "    redis.call('ZADD', KEYS[k+4], 0, peer .. ' ' .. id)\n"
               "  end\n"
               "  redis.call('HSET', KEYS[k+3], peer, last .. ':' .. rd)\n"
               "  u = redis.call('ZCARD', KEYS[k+4])\n"
               "  if u > tonumber(ARGV[7]) then\n"
               "    redis.call('DEL', KEYS[k])\n"
               "    return 0\n"
               "  end\n"
               "  redis.call('SET', KEYS[k], g .. ':' .. n .. ':' .. u, 'EX', ARGV[1])\n"
               "  for j = k + 1, k + 4 do redis.call('EXPIRE', KEYS[j], ARGV[1]) end\n"
               "  return 1\n"
               "end\n"
               "local r = side(3, 8, true) + side(9, 10, false)\n"
               "if ARGV[3] ~= '' and tonumber(ARGV[2]) > 0 then\n"
               "  redis.call('LPUSH', KEYS[2], ARGV[3])\n"
               "  redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[2]) - 1)\n"
               "  redis.call('EXPIRE', KEYS[2], ARGV[1])\n"
               "end\n"
               "return r\n";

/*
 * put_chats. ARGV: ttl, fresh generation token (used only when imgw:gen is
 * missing), has_mark, mark, then per entry: peer, last id (20 digits), entry,
 * read marker (20 digits), unread ids (20 digits each, concatenated).
 * Answers the entry count, or -1 when the fill was overtaken by an update.
 */
static const char script_put[] =
    "local d = redis.call('GET', KEYS[7]) or ''\n"
    "if ARGV[3] == '1' then\n"
    "  if d ~= ARGV[4] then return -1 end\n"
    "elseif d ~= '' then return -1 end\n"
    "local g = redis.call('GET', KEYS[6])\n"
    "if not g then g = ARGV[2]; redis.call('SET', KEYS[6], g) end\n"
    "redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5])\n"
    "for i = 5, #ARGV, 5 do\n"
    "  local peer = ARGV[i]\n"
    "  redis.call('HSET', KEYS[2], peer, ARGV[i+2])\n"
    "  redis.call('ZADD', KEYS[3], 0, ARGV[i+1] .. ' ' .. peer)\n"
    "  redis.call('HSET', KEYS[4], peer, ARGV[i+1] .. ':' .. ARGV[i+3])\n"
    "  local ids, b = ARGV[i+4], {}\n"
    "  for j = 1, #ids, 20 do\n"
    "    b[#b + 1] = 0\n"
    "    b[#b + 1] = peer .. ' ' .. string.sub(ids, j, j + 19)\n"
    "    if #b >= 1000 then redis.call('ZADD', KEYS[5], unpack(b)); b = {} end\n"
    "  end\n"
    "  if #b > 0 then redis.call('ZADD', KEYS[5], unpack(b)) end\n"
    "end\n"
    "local n = redis.call('HLEN', KEYS[2])\n"
    "local u = redis.call('ZCARD', KEYS[5])\n"
    "redis.call('SET', KEYS[1], g .. ':' .. n .. ':' .. u, 'EX', ARGV[1])\n"
    "for j = 2, 5 do redis.call('EXPIRE', KEYS[j], ARGV[1]) end\n"
    "return n\n";

/*
 * get_chats. ARGV: limit. A hit answers an array of peer, entry, unread
 * triples, most recent first; a miss answers the dirty stamp as a string
 * ('' when none). An inconsistent list is invalidated and answered as a miss.
 */
static const char script_get[] = LUA_COMMON
    "local g, n, u = valid_gen(KEYS[1], KEYS[6])\n"
    "local function miss()\n"
    "  return redis.call('GET', KEYS[7]) or ''\n"
    "end\n"
    "if not g then return miss() end\n"
    "if not whole(KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], n, u) then\n"
    "  return miss()\n"
    "end\n"
    "local lim = tonumber(ARGV[1])\n"
    "if n == 0 or lim <= 0 then return {} end\n"
    "local mem = redis.call('ZREVRANGE', KEYS[3], 0, lim - 1)\n"
    "local peers = {}\n"
    "for i = 1, #mem do peers[i] = string.sub(mem[i], 22) end\n"
    "local e = redis.call('HMGET', KEYS[2], unpack(peers))\n"
    "local out = {}\n"
    "for i = 1, #peers do\n"
    "  if not e[i] then\n"
    "    redis.call('DEL', KEYS[1])\n"
    "    return miss()\n"
    "  end\n"
    "  out[#out + 1] = peers[i]\n"
    "  out[#out + 1] = e[i]\n"
    "  out[#out + 1] = tostring(redis.call('ZLEXCOUNT', KEYS[5], '[' .. peers[i] .. ' ',\n"
    "                                      '[' .. peers[i] .. ' ~'))\n"
    "end\n"
    "return out\n";

/*
 * mark_read. ARGV: ttl, peer, the marker PostgreSQL moved to (20 digits),
 * stamp, fill window. A marker for a conversation the list does not have yet
 * (its first message is still on its way here) cannot be kept for later: the
 * list is dropped and rebuilt on its next read.
 */
static const char script_read[] =
    LUA_COMMON "redis.call('SET', KEYS[7], ARGV[4], 'EX', ARGV[5])\n"
               "local g, n, u = valid_gen(KEYS[1], KEYS[6])\n"
               "if not g then return 0 end\n"
               "if not whole(KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], n, u) then\n"
               "  return 0\n"
               "end\n"
               "local peer = ARGV[2]\n"
               "local m = redis.call('HGET', KEYS[4], peer)\n"
               "if not m then\n"
               "  redis.call('DEL', KEYS[1])\n"
               "  return 0\n"
               "end\n"
               "local last, rd = string.sub(m, 1, 20), string.sub(m, 22, 41)\n"
               "if later(ARGV[3], rd) then\n"
               "  drop_read(KEYS[5], peer, ARGV[3])\n"
               "  redis.call('HSET', KEYS[4], peer, last .. ':' .. ARGV[3])\n"
               "  u = redis.call('ZCARD', KEYS[5])\n"
               "end\n"
               "redis.call('SET', KEYS[1], g .. ':' .. n .. ':' .. u, 'EX', ARGV[1])\n"
               "for j = 2, 5 do redis.call('EXPIRE', KEYS[j], ARGV[1]) end\n"
               "return 1\n";

static const char *const scripts[S_COUNT] = {script_update, script_put, script_get, script_read};
static const char *const script_names[S_COUNT] = {"update", "put", "get", "read"};

/* ---- small helpers ------------------------------------------------------ */

static uint64_t fnv1a(const char *s)
{
    uint64_t h = 1469598103934665603ull;

    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ull;
    }
    return h ? h : 1;
}

static uint64_t next_rand(gw_cache_t *c)
{
    /* xorshift64: token uniqueness only, nothing secret. */
    uint64_t x = c->rnd;

    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    c->rnd = x;
    return x;
}

/* A token no other process or earlier call produced: random prefix, time, sequence. */
static void make_token(gw_cache_t *c, char *buf, size_t len)
{
    snprintf(buf, len, "%" PRIx64 ".%" PRIx64 ".%lx", next_rand(c), gw_now_ms(), ++c->tseq);
}

/* Writes "imgw:<kind>:<name>" into buf; GW_ERANGE when it does not fit. */
static int make_key(char *buf, size_t len, const char *kind, const char *name)
{
    int n = snprintf(buf, len, "imgw:%s:%s", kind, name);

    return n < 0 || (size_t)n >= len ? GW_ERANGE : 0;
}

/* The seven per-user keys in script order: valid, chats, order, marks, unids, gen, dirty. */
enum { K_VALID, K_CHATS, K_ORDER, K_MARKS, K_UNIDS, K_GEN, K_DIRTY, K_COUNT };

typedef struct ukeys {
    char k[K_COUNT][KEY_MAX];
} ukeys_t;

static int user_keys(ukeys_t *u, const char *user)
{
    static const char *const kinds[] = {"valid", "chats", "order", "marks", "unids"};

    if (user == NULL || *user == '\0')
        return GW_EINVAL;
    for (size_t i = 0; i < 5; i++)
        if (make_key(u->k[i], KEY_MAX, kinds[i], user) != 0)
            return GW_ERANGE;
    snprintf(u->k[K_GEN], KEY_MAX, "imgw:gen");
    return make_key(u->k[K_DIRTY], KEY_MAX, "dirty", user);
}

/* Writes id as 20 zero-padded digits (ID_DIGITS + 1 bytes with the NUL). */
static void pad_id(char *out, uint64_t id)
{
    snprintf(out, ID_DIGITS + 1, "%020" PRIu64, id);
}

/*
 * Length in bytes of the first max characters (code points) of the UTF-8 string s:
 * the preview PostgreSQL keeps is left(body, 200), which counts characters, and a
 * cached list must say exactly what PostgreSQL says.
 */
static size_t utf8_prefix(const char *s, size_t max)
{
    size_t n = 0, chars = 0;

    for (; s[n] != '\0'; n++) {
        if (((unsigned char)s[n] & 0xC0) == 0x80)
            continue; /* continuation byte: part of the character already counted */
        if (chars == max)
            break;
        chars++;
    }
    return n;
}

/* Encodes one chat entry; the caller puts the object after using the string. */
static json_object *entry_json(const char *peer, uint64_t last_id, uint64_t last_ts,
                               const char *last_sender, const char *kind, const char *preview,
                               size_t preview_len)
{
    json_object *o = json_object_new_object();

    if (o == NULL)
        return NULL;
    json_object_object_add(o, "peer", json_object_new_string(peer));
    json_object_object_add(o, "last_id", json_object_new_uint64(last_id));
    json_object_object_add(o, "last_ts", json_object_new_uint64(last_ts));
    json_object_object_add(o, "last_sender", json_object_new_string(last_sender));
    json_object_object_add(o, "kind", json_object_new_string(kind));
    json_object_object_add(o, "preview", json_object_new_string_len(preview, (int)preview_len));
    return o;
}

static const char *entry_text(json_object *o, size_t *len)
{
    const char *s = json_object_to_json_string_length(
        o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, len);
    return s;
}

/* ---- connection state --------------------------------------------------- */

static int can_send(const gw_cache_t *c)
{
    return gw_redisconn_is_up(c->conn) && gw_redisconn_pending(c->conn) < PENDING_MAX;
}

/* ---- handshake ---------------------------------------------------------- */

static void send_bump(gw_cache_t *c);

static void on_hs_reply(redisAsyncContext *ac, void *r, void *priv)
{
    gw_cache_t *c = gw_redisconn_ctx(ac);
    redisReply *reply = r;
    intptr_t idx = (intptr_t)priv;

    if (!gw_redisconn_replied(ac, reply) || !gw_redisconn_in_handshake(c->conn))
        return;
    if (reply->type == REDIS_REPLY_ERROR) {
        gw_error("cache", "redis %s: %s failed: %.200s", gw_redisconn_label(c->conn),
                 idx < 0 ? "SELECT" : script_names[idx], reply->str);
        c->hs_failed = 1;
    } else if (idx >= 0 && idx < S_COUNT) {
        if (reply->type != REDIS_REPLY_STRING || reply->len != 40) {
            gw_error("cache", "redis %s: unexpected SCRIPT LOAD reply",
                     gw_redisconn_label(c->conn));
            c->hs_failed = 1;
        } else {
            memcpy(c->sha[idx], reply->str, 40);
            c->sha[idx][40] = '\0';
        }
    }
    if (--c->hs_left > 0)
        return;
    if (c->hs_failed) {
        gw_redisconn_drop(c->conn, "handshake failed");
        return;
    }
    gw_redisconn_up(c->conn);
    gw_info("cache", "redis %s db %d: connected", gw_redisconn_label(c->conn), c->db);
    send_bump(c);
}

static int hs_send(gw_cache_t *c, intptr_t idx, int argc, const char **argv, const size_t *lens)
{
    if (gw_redisconn_send(c->conn, on_hs_reply, (void *)idx, argc, argv, lens) != 0)
        return GW_EIO;
    c->hs_left++;
    return 0;
}

/* The socket is up: SELECT the database and load the scripts. */
static void on_connected(void *ctx, redisAsyncContext *ac)
{
    gw_cache_t *c = ctx;
    char dbs[16];
    const char *argv[3];
    size_t lens[3];

    GW_UNUSED(ac);
    c->hs_left = 0;
    c->hs_failed = 0;
    snprintf(dbs, sizeof(dbs), "%d", c->db);
    argv[0] = "SELECT";
    argv[1] = dbs;
    lens[0] = 6;
    lens[1] = strlen(dbs);
    if (hs_send(c, -1, 2, argv, lens) != 0)
        goto fail;
    for (intptr_t i = 0; i < S_COUNT; i++) {
        argv[0] = "SCRIPT";
        argv[1] = "LOAD";
        argv[2] = scripts[i];
        lens[0] = 6;
        lens[1] = 4;
        lens[2] = strlen(scripts[i]);
        if (hs_send(c, i, 3, argv, lens) != 0)
            goto fail;
    }
    return;
fail:
    c->hs_failed = 1;
    if (c->hs_left == 0)
        gw_redisconn_drop(c->conn, "handshake failed");
}

/* ---- commands ----------------------------------------------------------- */

static void on_write_reply(redisAsyncContext *ac, void *r, void *priv);

static int send_argv(gw_cache_t *c, gw_redisconn_reply_cb *fn, void *priv, int argc,
                     const char **argv, const size_t *lens)
{
    return gw_redisconn_send(c->conn, fn, priv, argc, argv, lens);
}

static void on_bump_reply(redisAsyncContext *ac, void *r, void *priv)
{
    gw_cache_t *c = gw_redisconn_ctx(ac);
    redisReply *reply = r;

    GW_UNUSED(priv);
    gw_redisconn_replied(ac, reply);
    if (reply == NULL || reply->type == REDIS_REPLY_ERROR) {
        c->need_bump = 1;
        c->st.errors++;
        if (reply != NULL)
            gw_error("cache", "redis: cannot invalidate cached lists: %.200s", reply->str);
        return;
    }
    gw_info("cache", "cached chat lists invalidated (updates were lost while Redis was away)");
}

/*
 * Sends SET imgw:gen <new token> when a guarded write was lost, ahead of
 * anything else on the connection, so that no later read trusts a list the
 * lost write should have changed. May exceed PENDING_MAX by one.
 */
static void send_bump(gw_cache_t *c)
{
    char tok[64];
    const char *argv[3] = {"SET", "imgw:gen", tok};
    size_t lens[3];

    if (!c->need_bump || !gw_redisconn_is_up(c->conn))
        return;
    make_token(c, tok, sizeof(tok));
    lens[0] = 3;
    lens[1] = 8;
    lens[2] = strlen(tok);
    if (send_argv(c, on_bump_reply, NULL, 3, argv, lens) == 0)
        c->need_bump = 0;
}

/* A write could not be sent: counted, and remembered when it was a chat-list write. */
static void write_lost(gw_cache_t *c, int guarded)
{
    c->st.errors++;
    if (guarded)
        c->need_bump = 1;
}

static void on_write_reply(redisAsyncContext *ac, void *r, void *priv)
{
    gw_cache_t *c = gw_redisconn_ctx(ac);
    redisReply *reply = r;

    gw_redisconn_replied(ac, reply);
    if (reply == NULL) {
        write_lost(c, priv == &guarded_tag);
        return;
    }
    if (reply->type == REDIS_REPLY_ERROR) {
        write_lost(c, priv == &guarded_tag);
        gw_warn("cache", "redis write failed: %.200s", reply->str);
        if (strncmp(reply->str, "NOSCRIPT", 8) == 0 && gw_redisconn_is_current(c->conn, ac))
            gw_redisconn_drop(c->conn, "scripts were flushed"); /* the handshake loads them again */
        else
            send_bump(c);
        return;
    }
    if (reply->type == REDIS_REPLY_INTEGER && reply->integer < 0)
        gw_debug("cache", "chat list fill refused: the user had an update meanwhile");
}

/* Sends a chat-list script; on any failure the write is counted as lost. */
static void send_guarded(gw_cache_t *c, int s, int argc, const char **argv, size_t *lens)
{
    if (!can_send(c)) {
        write_lost(c, 1);
        return;
    }
    send_bump(c);
    argv[0] = "EVALSHA";
    lens[0] = 7;
    argv[1] = c->sha[s];
    lens[1] = 40;
    if (send_argv(c, on_write_reply, &guarded_tag, argc, argv, lens) != 0) {
        write_lost(c, 1);
        return;
    }
    c->st.writes++;
}

/* ---- public API ----------------------------------------------------------- */

int gw_cache_new(uv_loop_t *loop, const gw_config_t *cfg, gw_cache_t **out)
{
    gw_cache_t *c = calloc(1, sizeof(*c));
    gw_redisconn_opts_t o = {
        .module = "cache",
        .host = cfg->redis_host,
        .port = cfg->redis_port,
        .user = cfg->redis_user,
        .password = cfg->redis_password,
        .connect_timeout_ms = CONNECT_TIMEOUT_MS, /* covers the handshake too */
        .command_timeout_ms = COMMAND_TIMEOUT_MS,
        .on_connected = on_connected,
    };
    uint64_t seed = 0;
    int rc;

    *out = NULL;
    if (c == NULL)
        return GW_ENOMEM;
    c->loop = loop;
    c->db = cfg->redis_db;
    c->ttl_s = cfg->cache_ttl_s;
    c->recent = cfg->cache_recent;
    if (uv_random(NULL, NULL, &seed, sizeof(seed), 0, NULL) != 0)
        seed = gw_now_ms() ^ (uint64_t)(uintptr_t)c;
    c->rnd = seed ? seed : 0x9E3779B97F4A7C15ull;
    *out = c;
    if (cfg->redis_host == NULL || cfg->redis_host[0] == '\0') {
        gw_info("cache", "redis_host is empty: the cache is disabled");
        return 0;
    }
    o.ctx = c;
    rc = gw_redisconn_new(loop, &o, &c->conn);
    if (rc == GW_EINVAL) {
        /* Config bounds do not cover the host name's length; refuse rather than truncate. */
        gw_error("cache", "redis_host is too long: the cache is disabled");
        return 0;
    }
    if (rc != 0) {
        *out = NULL;
        free(c);
        return rc;
    }
    gw_redisconn_start(c->conn);
    return 0;
}

int gw_cache_is_up(const gw_cache_t *c)
{
    return c != NULL && gw_redisconn_is_up(c->conn);
}

void gw_cache_on_message(gw_cache_t *c, const gw_cache_msg_t *m, const char *conv_key)
{
    ukeys_t *ks = NULL, *kr = NULL;
    char recent[KEY_MAX];
    char ttl[16], rmax[16], id[ID_DIGITS + 1], win[16], stamp[24], idsmax[16];
    const char *argv[3 + 14 + 11];
    size_t lens[GW_ARRAY_SIZE(argv)];
    json_object *es = NULL, *er = NULL;
    const char *kind, *body;
    size_t plen, elen_s = 0, elen_r = 0;
    int i = 2;

    if (c == NULL || c->conn == NULL || m == NULL)
        return;
    if (m->sender == NULL || m->recipient == NULL || conv_key == NULL) {
        gw_warn("cache", "on_message without sender, recipient or conversation");
        return;
    }
    if (!can_send(c)) {
        write_lost(c, 1);
        return;
    }
    ks = malloc(sizeof(*ks));
    kr = malloc(sizeof(*kr));
    if (ks == NULL || kr == NULL || user_keys(ks, m->sender) != 0 ||
        user_keys(kr, m->recipient) != 0 ||
        make_key(recent, sizeof(recent), "recent", conv_key) != 0) {
        gw_warn("cache", "message not cached: user or conversation key too long");
        write_lost(c, 1);
        goto done;
    }
    kind = m->kind ? m->kind : "text";
    body = m->body ? m->body : "";
    plen = utf8_prefix(body, PREVIEW_MAX);
    es = entry_json(m->recipient, m->id, m->ts, m->sender, kind, body, plen);
    er = entry_json(m->sender, m->id, m->ts, m->sender, kind, body, plen);
    if (es == NULL || er == NULL) {
        write_lost(c, 1);
        goto done;
    }
    snprintf(ttl, sizeof(ttl), "%d", c->ttl_s);
    snprintf(rmax, sizeof(rmax), "%d", c->recent);
    pad_id(id, m->id);
    snprintf(win, sizeof(win), "%d", FILL_WINDOW_S);
    snprintf(stamp, sizeof(stamp), "m%" PRIu64, m->id);
    snprintf(idsmax, sizeof(idsmax), "%d", GW_CACHE_UNREAD_IDS_MAX);

    argv[i] = "14"; /* numkeys */
    lens[i++] = 2;
#define ARG(s, n) (argv[i] = (s), lens[i++] = (n))
#define ARGS(s)   ARG((s), strlen(s))
    ARGS(ks->k[K_GEN]);
    ARGS(recent);
    for (int k = K_VALID; k <= K_UNIDS; k++)
        ARGS(ks->k[k]);
    ARGS(ks->k[K_DIRTY]);
    for (int k = K_VALID; k <= K_UNIDS; k++)
        ARGS(kr->k[k]);
    ARGS(kr->k[K_DIRTY]);
    ARGS(ttl);
    ARGS(rmax);
    if (m->frame_json != NULL)
        ARGS(m->frame_json);
    else
        ARG("", 0);
    ARGS(id);
    ARGS(win);
    ARGS(stamp);
    ARGS(idsmax);
    ARGS(m->recipient);
    argv[i] = entry_text(es, &elen_s);
    lens[i++] = elen_s;
    ARGS(m->sender);
    argv[i] = entry_text(er, &elen_r);
    lens[i++] = elen_r;
#undef ARG
#undef ARGS
    send_guarded(c, S_UPDATE, i, argv, lens);
done:
    json_object_put(es);
    json_object_put(er);
    free(ks);
    free(kr);
}

/* Appends the user's seven keys to argv (after "numkeys"). */
static int push_user_keys(const ukeys_t *k, const char **argv, size_t *lens, int i)
{
    argv[i] = "7";
    lens[i++] = 1;
    for (int j = 0; j < K_COUNT; j++) {
        argv[i] = k->k[j];
        lens[i++] = strlen(k->k[j]);
    }
    return i;
}

void gw_cache_mark_read(gw_cache_t *c, const char *user, const char *peer, uint64_t marker)
{
    ukeys_t *k;
    char ttl[16], win[16], stamp[64], rd[ID_DIGITS + 1];
    const char *argv[3 + K_COUNT + 5];
    size_t lens[GW_ARRAY_SIZE(argv)];
    int i;

    if (c == NULL || c->conn == NULL || peer == NULL)
        return;
    if (!can_send(c)) {
        write_lost(c, 1);
        return;
    }
    k = malloc(sizeof(*k));
    if (k == NULL || user_keys(k, user) != 0) {
        write_lost(c, 1);
        free(k);
        return;
    }
    snprintf(ttl, sizeof(ttl), "%d", c->ttl_s);
    snprintf(win, sizeof(win), "%d", FILL_WINDOW_S);
    make_token(c, stamp, sizeof(stamp));
    pad_id(rd, marker);
    i = push_user_keys(k, argv, lens, 2);
    argv[i] = ttl;
    lens[i++] = strlen(ttl);
    argv[i] = peer;
    lens[i++] = strlen(peer);
    argv[i] = rd;
    lens[i++] = strlen(rd);
    argv[i] = stamp;
    lens[i++] = strlen(stamp);
    argv[i] = win;
    lens[i++] = strlen(win);
    send_guarded(c, S_READ, i, argv, lens);
    free(k);
}

void gw_cache_web_user(gw_cache_t *c, const char *user, int online)
{
    const char *argv[3] = {online ? "SADD" : "SREM", "imgw:web", user};
    size_t lens[3] = {4, 8, 0};

    if (c == NULL || c->conn == NULL || user == NULL)
        return;
    lens[2] = strlen(user);
    if (!can_send(c) || lens[2] >= KEY_MAX) {
        write_lost(c, 0);
        return;
    }
    send_bump(c);
    if (send_argv(c, on_write_reply, &unguarded_tag, 3, argv, lens) != 0) {
        write_lost(c, 0);
        return;
    }
    c->st.writes++;
}

/* Remembers the dirty stamp a miss saw, unless an older live one is kept for user. */
static void fill_remember(gw_cache_t *c, uint64_t hash, const char *mark, size_t len)
{
    fill_t *f = &c->fills[hash % FILL_SLOTS];
    uint64_t now = uv_now(c->loop);

    if (len >= MARK_MAX)
        return;
    /* The oldest stamp is the safe one: it predates every PostgreSQL read that follows. */
    if (f->hash == hash && now - f->at_ms < (FILL_WINDOW_S - 10) * 1000u)
        return;
    f->hash = hash;
    f->at_ms = now;
    memcpy(f->mark, mark, len);
    f->mark[len] = '\0';
}

/* Takes the stamp remembered for user, if it is still young enough to trust. */
static int fill_take(gw_cache_t *c, uint64_t hash, char *mark)
{
    fill_t *f = &c->fills[hash % FILL_SLOTS];
    uint64_t now = uv_now(c->loop);

    if (f->hash != hash)
        return 0;
    f->hash = 0;
    if (now - f->at_ms >= (FILL_WINDOW_S - 10) * 1000u)
        return 0;
    memcpy(mark, f->mark, MARK_MAX);
    return 1;
}

static int get_u64(json_object *o, const char *key, uint64_t *out)
{
    json_object *v;

    if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_int) ||
        json_object_get_int64(v) < 0)
        return GW_EINVAL;
    *out = json_object_get_uint64(v);
    return 0;
}

/* A string member without NUL: json-c keeps "\u0000", which a C string would cut short. */
static const char *get_str(json_object *o, const char *key)
{
    json_object *v;
    const char *s;
    int n;

    if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
        return NULL;
    s = json_object_get_string(v);
    n = json_object_get_string_len(v);
    return n >= 0 && memchr(s, '\0', (size_t)n) == NULL ? s : NULL;
}

static int parse_unread(const redisReply *r, uint32_t *out)
{
    uint64_t v = 0;

    if (r->type != REDIS_REPLY_STRING || r->len == 0 || r->len > 10)
        return GW_EINVAL;
    for (size_t i = 0; i < r->len; i++) {
        if (r->str[i] < '0' || r->str[i] > '9')
            return GW_EINVAL;
        v = v * 10 + (uint64_t)(r->str[i] - '0');
    }
    if (v > UINT32_MAX)
        return GW_EINVAL;
    *out = (uint32_t)v;
    return 0;
}

/* Parses one entry; the strings in *ch point into *objp, which the caller puts. */
static int parse_entry(const redisReply *peer, const redisReply *entry, const redisReply *unread,
                       gw_chat_t *ch, json_object **objp)
{
    json_tokener *tok;
    json_object *o;

    *objp = NULL;
    if (peer->type != REDIS_REPLY_STRING || entry->type != REDIS_REPLY_STRING || entry->len == 0 ||
        entry->len > ENTRY_MAX || parse_unread(unread, &ch->unread) != 0)
        return GW_EINVAL;
    tok = json_tokener_new_ex(4);
    if (tok == NULL)
        return GW_ENOMEM;
    o = json_tokener_parse_ex(tok, entry->str, (int)entry->len);
    if (o == NULL || json_tokener_get_error(tok) != json_tokener_success ||
        json_tokener_get_parse_end(tok) != entry->len) {
        json_tokener_free(tok);
        json_object_put(o);
        return GW_EINVAL;
    }
    json_tokener_free(tok);
    *objp = o;
    if (!json_object_is_type(o, json_type_object))
        return GW_EINVAL;
    ch->peer = get_str(o, "peer");
    ch->last_sender = get_str(o, "last_sender");
    ch->kind = get_str(o, "kind");
    ch->preview = get_str(o, "preview");
    if (ch->peer == NULL || ch->last_sender == NULL || ch->kind == NULL || ch->preview == NULL ||
        get_u64(o, "last_id", &ch->last_id) != 0 || get_u64(o, "last_ts", &ch->last_ts) != 0)
        return GW_EINVAL;
    /* The set member is the truth about which conversation this is. */
    if (strlen(ch->peer) != peer->len || memcmp(ch->peer, peer->str, peer->len) != 0)
        return GW_EINVAL;
    return 0;
}

/* Answers a hit to the caller; GW_EINVAL when anything in it is malformed. */
static int answer_hit(const redisReply *r, gw_cache_chats_cb cb, void *ud)
{
    size_t n = r->elements / 3;
    gw_chat_t *chats = NULL;
    json_object **objs = NULL;
    int rc = 0;

    if (r->elements % 3 != 0 || n > GET_MAX)
        return GW_EINVAL;
    if (n == 0) {
        cb(ud, 0, NULL, 0);
        return 0;
    }
    chats = calloc(n, sizeof(*chats));
    objs = calloc(n, sizeof(*objs));
    if (chats == NULL || objs == NULL) {
        rc = GW_ENOMEM;
        goto done;
    }
    for (size_t i = 0; i < n && rc == 0; i++)
        rc = parse_entry(r->element[3 * i], r->element[3 * i + 1], r->element[3 * i + 2], &chats[i],
                         &objs[i]);
    if (rc == 0)
        cb(ud, 0, chats, n);
done:
    if (objs != NULL)
        for (size_t i = 0; i < n; i++)
            json_object_put(objs[i]);
    free(objs);
    free(chats);
    return rc;
}

/*
 * Drops a list's validity marker so that the next read misses cleanly and the
 * router rebuilds the list (a malformed entry would otherwise stay until
 * expiry). Nothing is lost if this fails: the list still reads as a miss.
 */
static void invalidate(gw_cache_t *c, const char *valid_key)
{
    const char *argv[2] = {"DEL", valid_key};
    size_t lens[2] = {3, strlen(valid_key)};

    if (can_send(c) && send_argv(c, on_write_reply, &unguarded_tag, 2, argv, lens) == 0)
        c->st.writes++;
}

static void on_get_reply(redisAsyncContext *ac, void *r, void *priv)
{
    gw_cache_t *c = gw_redisconn_ctx(ac);
    redisReply *reply = r;
    get_req_t *q = priv;

    gw_redisconn_replied(ac, reply);
    if (reply == NULL || reply->type == REDIS_REPLY_ERROR) {
        c->st.errors++;
        if (reply != NULL) {
            gw_warn("cache", "redis read failed: %.200s", reply->str);
            if (strncmp(reply->str, "NOSCRIPT", 8) == 0 && gw_redisconn_is_current(c->conn, ac))
                gw_redisconn_drop(c->conn, "scripts were flushed");
        }
        q->cb(q->ud, GW_EIO, NULL, 0);
    } else if (reply->type == REDIS_REPLY_STRING || reply->type == REDIS_REPLY_NIL) {
        if (reply->type == REDIS_REPLY_STRING)
            fill_remember(c, q->user_hash, reply->str, reply->len);
        c->st.misses++;
        q->cb(q->ud, GW_ENOTFOUND, NULL, 0);
    } else if (reply->type == REDIS_REPLY_ARRAY) {
        /* The callback may stop the cache, but the struct lives until gw_cache_free(). */
        if (answer_hit(reply, q->cb, q->ud) == 0) {
            c->st.hits++;
        } else {
            c->st.misses++;
            gw_warn("cache", "malformed cached chat list: treated as a miss");
            invalidate(c, q->valid_key);
            q->cb(q->ud, GW_ENOTFOUND, NULL, 0);
        }
    } else {
        c->st.misses++;
        q->cb(q->ud, GW_ENOTFOUND, NULL, 0);
    }
    free(q);
}

void gw_cache_get_chats(gw_cache_t *c, const char *user, size_t limit, gw_cache_chats_cb cb,
                        void *ud)
{
    ukeys_t *k;
    get_req_t *q;
    char lim[24];
    const char *argv[3 + K_COUNT + 1];
    size_t lens[GW_ARRAY_SIZE(argv)];
    int i, rc;

    if (c == NULL || c->conn == NULL) {
        cb(ud, GW_ENOTFOUND, NULL, 0);
        return;
    }
    if (!can_send(c)) {
        c->st.errors++;
        cb(ud, GW_EIO, NULL, 0);
        return;
    }
    k = malloc(sizeof(*k));
    if (k == NULL || user_keys(k, user) != 0) {
        free(k);
        c->st.misses++;
        cb(ud, GW_ENOTFOUND, NULL, 0);
        return;
    }
    q = malloc(sizeof(*q) + strlen(k->k[K_VALID]) + 1);
    if (q == NULL) {
        free(k);
        c->st.errors++;
        cb(ud, GW_EIO, NULL, 0);
        return;
    }
    q->c = c;
    q->cb = cb;
    q->ud = ud;
    q->user_hash = fnv1a(user);
    memcpy(q->valid_key, k->k[K_VALID], strlen(k->k[K_VALID]) + 1);
    snprintf(lim, sizeof(lim), "%zu", limit < GET_MAX ? limit : (size_t)GET_MAX);
    send_bump(c);
    argv[0] = "EVALSHA";
    lens[0] = 7;
    argv[1] = c->sha[S_GET];
    lens[1] = 40;
    i = push_user_keys(k, argv, lens, 2);
    argv[i] = lim;
    lens[i++] = strlen(lim);
    rc = send_argv(c, on_get_reply, q, i, argv, lens);
    free(k);
    if (rc != 0) {
        free(q);
        c->st.errors++;
        cb(ud, GW_EIO, NULL, 0);
    }
}

/*
 * Appends the unread ids of one entry, as ID_DIGITS-digit strings, to out (room
 * for n of them). ids is PostgreSQL's space-separated list; it must hold
 * exactly n ids, each a positive decimal below 2^63, or the fill is refused.
 */
static int pack_ids(const char *ids, uint32_t n, char *out)
{
    uint32_t got = 0;
    const char *p = ids;

    if (ids == NULL)
        return GW_EINVAL;
    while (*p) {
        uint64_t v = 0;
        size_t len = 0;

        while (*p == ' ')
            p++;
        if (*p == '\0')
            break;
        for (; *p >= '0' && *p <= '9'; p++, len++) {
            if (len >= 19)
                return GW_EINVAL;
            v = v * 10 + (uint64_t)(*p - '0');
        }
        if (len == 0 || (*p != ' ' && *p != '\0') || v == 0 || got >= n)
            return GW_EINVAL;
        pad_id(out + (size_t)got * ID_DIGITS, v);
        got++;
    }
    return got == n ? 0 : GW_EINVAL;
}

void gw_cache_put_chats(gw_cache_t *c, const char *user, const gw_chat_t *chats, size_t n)
{
    ukeys_t *k = NULL;
    const char **argv = NULL;
    size_t *lens = NULL, argc = 3 + K_COUNT + 4 + 5 * n, i = 3;
    json_object **objs = NULL;
    char *nums = NULL; /* two padded ids per entry: last id and read marker */
    char *ids = NULL;  /* every entry's unread ids, padded, back to back */
    size_t nids = 0, at = 0;
    char ttl[16], tok[64], mark[MARK_MAX];
    int has_mark;

    if (c == NULL || c->conn == NULL)
        return;
    if (n > PUT_MAX) {
        gw_info("cache", "chat list of %zu entries not cached (limit %d)", n, PUT_MAX);
        return;
    }
    for (size_t e = 0; e < n; e++)
        nids += chats[e].unread;
    if (nids > GW_CACHE_UNREAD_IDS_MAX) {
        gw_debug("cache", "chat list with %zu unread messages not cached (limit %d)", nids,
                 GW_CACHE_UNREAD_IDS_MAX);
        return;
    }
    if (!can_send(c)) {
        /* Dropping a fill leaves the list invalid, which is safe: no bump needed. */
        c->st.errors++;
        return;
    }
    k = malloc(sizeof(*k));
    argv = calloc(argc, sizeof(*argv));
    lens = calloc(argc, sizeof(*lens));
    objs = calloc(n ? n : 1, sizeof(*objs));
    nums = malloc(2 * (ID_DIGITS + 1) * (n ? n : 1));
    ids = malloc(ID_DIGITS * (nids ? nids : 1) + 1);
    if (k == NULL || argv == NULL || lens == NULL || objs == NULL || nums == NULL || ids == NULL ||
        user_keys(k, user) != 0)
        goto fail;
    snprintf(ttl, sizeof(ttl), "%d", c->ttl_s);
    make_token(c, tok, sizeof(tok));
    has_mark = fill_take(c, fnv1a(user), mark);
    i = (size_t)push_user_keys(k, argv, lens, 2);
    argv[i] = ttl;
    lens[i++] = strlen(ttl);
    argv[i] = tok;
    lens[i++] = strlen(tok);
    argv[i] = has_mark ? "1" : "0";
    lens[i++] = 1;
    argv[i] = has_mark ? mark : "";
    lens[i++] = has_mark ? strlen(mark) : 0;
    for (size_t e = 0; e < n; e++) {
        const gw_chat_t *ch = &chats[e];
        char *last = nums + 2 * (ID_DIGITS + 1) * e, *rd = last + ID_DIGITS + 1;
        const char *preview = ch->preview ? ch->preview : "";

        if (ch->peer == NULL || ch->peer[0] == '\0' || strchr(ch->peer, ' ') != NULL)
            goto fail;
        if (pack_ids(ch->unread_ids, ch->unread, ids + at * ID_DIGITS) != 0) {
            gw_warn("cache", "chat list of %s not cached: unread ids of %s do not match the count",
                    user, ch->peer);
            goto fail;
        }
        objs[e] =
            entry_json(ch->peer, ch->last_id, ch->last_ts, ch->last_sender ? ch->last_sender : "",
                       ch->kind ? ch->kind : "text", preview, utf8_prefix(preview, PREVIEW_MAX));
        if (objs[e] == NULL)
            goto fail;
        pad_id(last, ch->last_id);
        pad_id(rd, ch->last_read);
        argv[i] = ch->peer;
        lens[i++] = strlen(ch->peer);
        argv[i] = last;
        lens[i++] = ID_DIGITS;
        argv[i] = entry_text(objs[e], &lens[i]);
        i++;
        argv[i] = rd;
        lens[i++] = ID_DIGITS;
        argv[i] = ids + at * ID_DIGITS;
        lens[i++] = (size_t)ch->unread * ID_DIGITS;
        at += ch->unread;
    }
    if (i > (size_t)INT32_MAX)
        goto fail;
    {
        /* Unguarded: a lost fill leaves the list invalid, which is safe. */
        argv[0] = "EVALSHA";
        lens[0] = 7;
        argv[1] = c->sha[S_PUT];
        lens[1] = 40;
        send_bump(c);
        if (send_argv(c, on_write_reply, &unguarded_tag, (int)i, argv, lens) != 0)
            goto fail;
        c->st.writes++;
    }
    goto done;
fail:
    c->st.errors++;
done:
    if (objs != NULL)
        for (size_t e = 0; e < n; e++)
            json_object_put(objs[e]);
    free(objs);
    free(ids);
    free(nums);
    free(lens);
    free(argv);
    free(k);
}

void gw_cache_get_stats(const gw_cache_t *c, gw_cache_stats_t *st)
{
    if (c == NULL) {
        memset(st, 0, sizeof(*st));
        return;
    }
    *st = c->st;
}

void gw_cache_stop(gw_cache_t *c)
{
    /* Outstanding reads are answered GW_EIO now. */
    if (c != NULL)
        gw_redisconn_stop(c->conn);
}

void gw_cache_free(gw_cache_t *c)
{
    if (c == NULL)
        return;
    gw_redisconn_free(c->conn);
    free(c);
}
