/*
 * relay.h - routing between gateways through Redis.
 *
 * Several gateways can share one component domain (allow_multiple): the XMPP
 * server then hands each of them a share of the inbound stanzas, so a
 * message can reach a gateway that holds none of the recipient's browsers.
 * The relay keeps a shared directory (user -> node ids of the gateways that
 * hold a session of the user) and forwards such messages to those gateways
 * over Redis pub/sub, where they are pushed like local ones. Its two
 * connections are redisconn.c's; hiredis is included only by redisconn.c,
 * cache.c and relay.c.
 *
 * Keys and channels (prefix "imgw:"):
 *   imgw:where:{user}   SET of node ids with a session of user; refreshed
 *                       while the user has sessions here, expires otherwise
 *   imgw:node:{id}      pub/sub channel of gateway node_id = id
 */
#ifndef GW_RELAY_H
#define GW_RELAY_H

#include "config.h"
#include "payload.h"
#include "proto.h"

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct gw_relay gw_relay_t;

/*
 * A message another gateway forwarded for user (a user id of ours), checked
 * member by member (see gw_relay_open). m and its strings are valid until the
 * callback returns; m->from is the conversation's peer.
 */
typedef void (*gw_relay_deliver_cb)(void *ud, const char *user, const gw_msg_t *m);

/*
 * Envelopes. Anyone who can PUBLISH on the Redis server could otherwise put
 * any message into any browser, so every envelope is signed:
 *
 *   "imgw2 <tag> <ts> <node> <db> <user>\n<msg frame JSON>"
 *
 * tag is 32 lower-case hex digits: the first 128 bits of HMAC-SHA256 over
 * everything after "imgw2 <tag> " under a key derived from relay_secret (or,
 * when that is empty, from component_secret, which the gateways of a domain
 * share anyway). ts is the sender's clock in ms; an envelope more than
 * GW_RELAY_MAX_SKEW_MS away from the receiver's clock is refused, which
 * bounds replays. The frame is not passed on as it came: it is parsed
 * strictly and re-encoded by the receiver.
 */
#define GW_RELAY_MAX_SKEW_MS 300000u

typedef struct gw_relay_key {
    unsigned char k[32];
} gw_relay_key_t;

/* Derives the envelope key from secret[0..len). Returns 0 or GW_EINVAL. */
int gw_relay_key_derive(gw_relay_key_t *key, const char *secret, size_t len);

/*
 * Appends the signed envelope of frame[0..len) for user, sent by node for
 * database db at now_ms, to b. Check b->overflow afterwards.
 */
void gw_relay_seal(const gw_relay_key_t *key, uint64_t now_ms, int node, int db, const char *user,
                   const char *frame, size_t len, gw_sbuf_t *b);

/* An opened envelope: m's strings point into it until gw_relay_env_free(). */
typedef struct gw_relay_env {
    int node;      /* the sending gateway */
    char user[65]; /* the recipient, a user id of ours */
    gw_msg_t m;
    void *root_; /* owned JSON tree */
} gw_relay_env_t;

/*
 * Checks an envelope (len bytes) received at now_ms by a gateway of database
 * db whose web users live at users_domain. On success returns 0 and fills
 * out (release with gw_relay_env_free). Otherwise out needs no release and
 * *why is a static reason: GW_ENOTFOUND for an envelope of another Redis
 * database (not an attack: pub/sub is server-wide), GW_EAUTH for an unsigned
 * or wrongly signed one, GW_EEXPIRED when its time is too far from now,
 * GW_EINVAL for anything malformed: the header, a user id, a frame that is
 * not exactly a msg frame for that user (unknown or extra members, a member
 * of the wrong type, a sender that is not a bare JID, a recipient other than
 * the user's JID, a conversation other than the sender, a body that XMPP
 * could not carry). Pure: no I/O.
 */
int gw_relay_open(const gw_relay_key_t *key, const char *users_domain, int db, uint64_t now_ms,
                  const char *env, size_t len, gw_relay_env_t *out, const char **why);

void gw_relay_env_free(gw_relay_env_t *e);

/*
 * Creates the relay on loop. Disabled (every call a no-op) when redis_host is
 * empty. Connects in the background and reconnects; while Redis is down,
 * forwarding is skipped (the message is still stored and recovered by the
 * recipient later). Returns 0 or GW_ENOMEM.
 */
int gw_relay_new(uv_loop_t *loop, const gw_config_t *cfg, gw_relay_deliver_cb cb, void *ud,
                 gw_relay_t **out);

/*
 * Messages forwarded to this gateway while its subscription was down are lost
 * (pub/sub keeps nothing). When the subscription is back after such a gap,
 * the relay calls cb(ud, since_ms) with the time the gap began, so that the
 * router can have its sessions recover from history what may have been
 * missed. Optional; set once after gw_relay_new.
 */
void gw_relay_on_gap(gw_relay_t *r, void (*cb)(void *ud, uint64_t since_ms), void *ud);

/*
 * Answers that reached the wrong gateway. The XMPP server deals every stanza for
 * an allowMultiple component domain round-robin, IQ results included, so the
 * answer to one gateway's registration request may arrive at another. That
 * gateway passes it on to the asker's channel as a control envelope, signed
 * like a message envelope:
 *
 *   "imgwc <tag> <ts> <from node> <db>\n<iq id> <status> <detail>"
 *
 * iq id is [A-Za-z0-9-]{1,64}, status a decimal (0 or a negative GW_E*
 * code), detail [a-z-]{0,40} (the companion's status or error condition).
 */
typedef void (*gw_relay_answer_cb)(void *ud, const char *iq_id, int status, const char *detail);
void gw_relay_on_answer(gw_relay_t *r, gw_relay_answer_cb cb, void *ud);

/* Passes an answer on to gateway `node` (0..1023). No-op when Redis is down. */
void gw_relay_pass_answer(gw_relay_t *r, int node, const char *iq_id, int status,
                          const char *detail);

/* Appends the signed control envelope of an answer to b (pure). Check b->overflow after. */
void gw_relay_seal_answer(const gw_relay_key_t *key, uint64_t now_ms, int node, int db,
                          const char *iq_id, int status, const char *detail, gw_sbuf_t *b);

/*
 * Checks a control envelope (pure, for tests and fuzzing): on success returns
 * 0 and fills id (>= 65 bytes), *status and detail (>= 41 bytes).
 */
int gw_relay_open_answer(const gw_relay_key_t *key, int db, uint64_t now_ms, const char *env,
                         size_t len, char *id, int *status, char *detail);

/* user has a first session here (here = 1) or no session any more (here = 0). */
void gw_relay_user_here(gw_relay_t *r, const char *user, int here);

/*
 * A message for user arrived here but user has no session here: forward the
 * encoded msg frame to the other gateways that hold a session of user.
 */
void gw_relay_forward(gw_relay_t *r, const char *user, const char *frame, size_t len);

typedef struct gw_relay_stats {
    uint64_t forwarded, received, errors;
    uint64_t refused; /* envelopes refused: unsigned, badly signed, stale or malformed */
} gw_relay_stats_t;
void gw_relay_get_stats(const gw_relay_t *r, gw_relay_stats_t *st);

/* Closes the connections; handles close when the loop runs. Then gw_relay_free(). */
void gw_relay_stop(gw_relay_t *r);
void gw_relay_free(gw_relay_t *r);

#endif
