#include <string.h>
#include <openssl/core_names.h>
#include <openssl/params.h>

#include "ipr_wire.h"

static uint8_t *put16(uint8_t *p, uint16_t v) { p[0] = v >> 8; p[1] = v; return p + 2; }

static uint8_t *
put32(uint8_t *p, uint32_t v)
{
    p[0] = v >> 24; p[1] = v >> 16; p[2] = v >> 8; p[3] = v;
    return p + 4;
}

static uint8_t *
put64(uint8_t *p, uint64_t v)
{
    p = put32(p, (uint32_t) (v >> 32));
    return put32(p, (uint32_t) v);
}


int
ipr_signer_init(ipr_signer_t *s, const uint8_t *secret, size_t len)
{
    OSSL_PARAM  params[2];

    s->mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    if (s->mac == NULL) {
        return -1;
    }
    s->ctx = EVP_MAC_CTX_new(s->mac);
    if (s->ctx == NULL) {
        EVP_MAC_free(s->mac);
        return -1;
    }
    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, "SHA256", 0);
    params[1] = OSSL_PARAM_construct_end();
    if (EVP_MAC_init(s->ctx, secret, len, params) != 1) {
        ipr_signer_free(s);
        return -1;
    }
    return 0;
}


void
ipr_signer_free(ipr_signer_t *s)
{
    EVP_MAC_CTX_free(s->ctx);
    EVP_MAC_free(s->mac);
    s->ctx = NULL;
    s->mac = NULL;
}


void
ipr_pack_record(uint8_t *p, const ipr_record_t *r)
{
    memcpy(p, r->client, 16);
    memcpy(p + 16, r->server, 16);
    memcpy(p + 32, r->type, IPR_TYPE_SIZE);
    p += 48;
    p = put16(p, r->server_port);
    p = put16(p, r->status);
    p = put16(p, r->flags);
    *p++ = r->http_version;
    *p++ = 0;
    p = put32(p, r->requests);
    p = put32(p, r->duration_us);
    p = put64(p, r->response_bytes);
    p = put64(p, r->wire_bytes);
    p = put64(p, r->retrans_bytes);
    p = put32(p, r->data_segs);
    p = put32(p, r->retrans_segs);
    p = put32(p, r->rtt_us);
    p = put32(p, r->rttvar_us);
    p = put32(p, r->min_rtt_us);
    p = put32(p, 0);
    put64(p, r->delivery_rate);
}


size_t
ipr_finish_datagram(uint8_t *buf, const ipr_header_t *h, unsigned count, ipr_signer_t *s)
{
    uint8_t  *p, tag[EVP_MAX_MD_SIZE];
    size_t    body, tag_len;

    if (count == 0 || h->tag_len < IPR_TAG_MIN || h->tag_len > IPR_TAG_MAX) {
        return 0;
    }
    p = buf;
    memcpy(p, "IPR", 3);
    p[3] = 1;                    /* version */
    p[4] = h->tag_len;
    p[5] = 0;                    /* flags */
    p = put16(p + 6, IPR_RECORD_SIZE);
    p = put16(p, (uint16_t) count);
    p = put16(p, 0);
    p = put32(p, h->key_id);
    p = put32(p, h->sender_id);
    p = put64(p, h->instance_id);
    p = put64(p, h->sequence);
    put64(p, h->time_ms);

    body = IPR_HEADER_SIZE + (size_t) count * IPR_RECORD_SIZE;
    /* NULL key: keep the key given to ipr_signer_init. */
    if (EVP_MAC_init(s->ctx, NULL, 0, NULL) != 1
        || EVP_MAC_update(s->ctx, buf, body) != 1
        || EVP_MAC_final(s->ctx, tag, &tag_len, sizeof(tag)) != 1)
    {
        return 0;
    }
    memcpy(buf + body, tag, h->tag_len);
    return body + h->tag_len;
}


void
ipr_address_v4(uint8_t out[16], const uint8_t in[4])
{
    memset(out, 0, 10);
    out[10] = 0xff;
    out[11] = 0xff;
    memcpy(out + 12, in, 4);
}


void
ipr_set_type(uint8_t out[IPR_TYPE_SIZE], const uint8_t *name, size_t len)
{
    size_t  i;

    /* At most 16 bytes; one outside printable ASCII (0x21..0x7e), a NUL
     * included, is sent as '?', as the wire format says. */
    memset(out, 0, IPR_TYPE_SIZE);
    for (i = 0; i < len && i < IPR_TYPE_SIZE; i++) {
        out[i] = (name[i] >= 0x21 && name[i] <= 0x7e) ? name[i] : '?';
    }
}
