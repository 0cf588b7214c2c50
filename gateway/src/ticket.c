/*
 * ticket.c - HMAC-SHA256 tickets.
 */
#include "ticket.h"
#include "config.h"
#include "gw.h"
#include "text.h"

#include <inttypes.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * SHA-256, fetched from the provider once. OpenSSL 3's one-shot HMAC() fetches
 * the MAC and the digest and builds and frees a MAC context on every call:
 * ~26,000 instructions for a short message (callgrind), ~9 % of the gateway's
 * work per message on the production path, where every relay envelope and
 * every signed stanza id is one HMAC. The construction below (RFC 2104) on a
 * fetched digest and one reused digest context costs a fraction of that.
 */
static EVP_MD *sha256_md(void)
{
    static EVP_MD *md;

    if (md == NULL)
        md = EVP_MD_fetch(NULL, "SHA256", NULL);
    return md;
}

static EVP_MD_CTX *digest_ctx(void)
{
    static EVP_MD_CTX *ctx;

    if (ctx == NULL)
        ctx = EVP_MD_CTX_new();
    return ctx;
}

/* SHA-256 of a[0..alen) followed by b[0..blen) into out (32 bytes). 0 or -1. */
static int sha256_2(EVP_MD *md, EVP_MD_CTX *ctx, const void *a, size_t alen, const void *b,
                    size_t blen, unsigned char out[32])
{
    unsigned int n = 0;

    if (!EVP_DigestInit_ex(ctx, md, NULL) || !EVP_DigestUpdate(ctx, a, alen) ||
        (blen > 0 && !EVP_DigestUpdate(ctx, b, blen)) || !EVP_DigestFinal_ex(ctx, out, &n) ||
        n != 32)
        return -1;
    return 0;
}

int gw_hmac_sha256(const void *key, size_t keylen, const void *msg, size_t len,
                   unsigned char out[32])
{
    EVP_MD *md = sha256_md();
    EVP_MD_CTX *ctx = digest_ctx();
    unsigned char k0[64], pad[64], inner[32];
    int rc = GW_EINVAL;

    if (md == NULL || ctx == NULL || (key == NULL && keylen > 0) || (msg == NULL && len > 0))
        return GW_EINVAL;
    memset(k0, 0, sizeof(k0));
    /* A key longer than the block is replaced by its digest (RFC 2104, section 2). */
    if (keylen > sizeof(k0)) {
        if (sha256_2(md, ctx, key, keylen, NULL, 0, k0) != 0)
            goto done;
    } else if (keylen > 0) {
        memcpy(k0, key, keylen);
    }
    for (size_t i = 0; i < sizeof(pad); i++)
        pad[i] = (unsigned char)(k0[i] ^ 0x36);
    if (sha256_2(md, ctx, pad, sizeof(pad), msg, len, inner) != 0)
        goto done;
    for (size_t i = 0; i < sizeof(pad); i++)
        pad[i] = (unsigned char)(k0[i] ^ 0x5c);
    if (sha256_2(md, ctx, pad, sizeof(pad), inner, sizeof(inner), out) != 0)
        goto done;
    rc = 0;
done:
    OPENSSL_cleanse(k0, sizeof(k0));
    OPENSSL_cleanse(pad, sizeof(pad));
    OPENSSL_cleanse(inner, sizeof(inner));
    return rc;
}

int gw_ct_equal(const void *a, const void *b, size_t n)
{
    return CRYPTO_memcmp(a, b, n) == 0;
}

static int mac_hex(const char *msg, size_t msglen, const char *secret, char hex[65])
{
    unsigned char mac[32];
    static const char digits[] = "0123456789abcdef";

    if (gw_hmac_sha256(secret, strlen(secret), msg, msglen, mac) != 0)
        return GW_EINVAL;
    for (unsigned i = 0; i < 32; i++) {
        hex[2 * i] = digits[mac[i] >> 4];
        hex[2 * i + 1] = digits[mac[i] & 15];
    }
    hex[64] = '\0';
    return 0;
}

int gw_ticket_verify(const char *ticket, const char *secret, uint64_t now, char *user,
                     size_t userlen)
{
    const char *c1, *c2, *p;
    char uid[65];
    char expected[65];
    size_t ulen;
    uint64_t expiry = 0;

    if (ticket == NULL || strlen(ticket) > 200)
        return GW_EINVAL;
    c1 = strchr(ticket, ':');
    if (c1 == NULL)
        return GW_EINVAL;
    c2 = strchr(c1 + 1, ':');
    if (c2 == NULL || strlen(c2 + 1) != 64)
        return GW_EINVAL;
    ulen = (size_t)(c1 - ticket);
    if (ulen == 0 || ulen >= sizeof(uid) || ulen >= userlen)
        return GW_EINVAL;
    memcpy(uid, ticket, ulen);
    uid[ulen] = '\0';
    if (!gw_user_id_ok(uid))
        return GW_EINVAL;
    if (c2 == c1 + 1 || c2 - c1 > 21)
        return GW_EINVAL;
    for (p = c1 + 1; p < c2; p++) {
        if (*p < '0' || *p > '9')
            return GW_EINVAL;
        expiry = expiry * 10u + (uint64_t)(*p - '0');
    }
    if (mac_hex(ticket, (size_t)(c2 - ticket), secret, expected) != 0)
        return GW_EINVAL;
    /* Constant time: the comparison must not reveal how many bytes matched. */
    if (CRYPTO_memcmp(expected, c2 + 1, 64) != 0)
        return GW_EAUTH;
    if (expiry < now)
        return GW_EEXPIRED;
    memcpy(user, uid, ulen + 1);
    return 0;
}

int gw_ticket_verify_cfg(const gw_config_t *cfg, const char *ticket, uint64_t now, char *user,
                         size_t userlen)
{
    int rc = gw_ticket_verify(ticket, cfg->ticket_secret, now, user, userlen);

    /*
     * Only a MAC mismatch is worth a second try: a malformed or expired
     * ticket is that under any secret. The window is checked here, not by
     * dropping the old secret on a timer, so a stalled loop cannot stretch it.
     */
    if (rc == GW_EAUTH && cfg->ticket_secret_prev != NULL && now < cfg->ticket_secret_prev_until)
        rc = gw_ticket_verify(ticket, cfg->ticket_secret_prev, now, user, userlen);
    return rc;
}

int gw_ticket_make(const char *user, uint64_t expiry, const char *secret, char *out, size_t outlen)
{
    char hex[65];
    int n;

    if (!gw_user_id_canonical(user))
        return GW_EINVAL;
    n = snprintf(out, outlen, "%s:%" PRIu64, user, expiry);
    if (n < 0 || (size_t)n + 66 > outlen)
        return GW_EINVAL;
    if (mac_hex(out, (size_t)n, secret, hex) != 0)
        return GW_EINVAL;
    snprintf(out + n, outlen - (size_t)n, ":%s", hex);
    return 0;
}

int gw_sha1_hex2(const void *a, size_t alen, const void *b, size_t blen, char out[41])
{
    static const char digits[] = "0123456789abcdef";
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned char md[20];
    unsigned int mdlen = 0;
    int rc = GW_EINVAL;

    /* Once per connection: the implicit fetch of "SHA1" is cheap enough here. */
    if (ctx == NULL || EVP_DigestInit_ex(ctx, EVP_sha1(), NULL) != 1 ||
        EVP_DigestUpdate(ctx, a, alen) != 1 || EVP_DigestUpdate(ctx, b, blen) != 1 ||
        EVP_DigestFinal_ex(ctx, md, &mdlen) != 1 || mdlen != sizeof(md))
        goto done;
    for (unsigned i = 0; i < sizeof(md); i++) {
        out[2 * i] = digits[md[i] >> 4];
        out[2 * i + 1] = digits[md[i] & 15];
    }
    out[40] = '\0';
    rc = 0;
done:
    EVP_MD_CTX_free(ctx);
    return rc;
}
