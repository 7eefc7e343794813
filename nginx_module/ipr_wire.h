/*
 * The ipr wire format, version 1 (docs/wire-format.md): a 44-byte header,
 * fixed 120-byte records, an HMAC-SHA256 tag. Plain C and OpenSSL, no
 * nginx, so the golden-vector test builds it on its own.
 */
#ifndef IPR_WIRE_H
#define IPR_WIRE_H

#include <stddef.h>
#include <stdint.h>
#include <openssl/evp.h>

#define IPR_HEADER_SIZE   44
#define IPR_RECORD_SIZE   120
#define IPR_TAG_MIN       16
#define IPR_TAG_MAX       32
#define IPR_TYPE_SIZE     16
#define IPR_MAX_DATAGRAM  65507

#define IPR_F_TCPINFO        0x0001
#define IPR_F_TCPINFO_SEGS   0x0002
#define IPR_F_BYTES_SENT     0x0004
#define IPR_F_DELIVERY_RATE  0x0008
#define IPR_F_APP_LIMITED    0x0010
#define IPR_F_NEW_CONNECTION 0x0020
#define IPR_F_TLS            0x0040

typedef struct {
    uint8_t   client[16];      /* IPv6, or IPv4 as ::ffff:a.b.c.d */
    uint8_t   server[16];
    uint8_t   type[IPR_TYPE_SIZE];
    uint16_t  server_port;
    uint16_t  status;
    uint16_t  flags;
    uint8_t   http_version;
    uint32_t  requests;
    uint32_t  duration_us;
    uint64_t  response_bytes;
    uint64_t  wire_bytes;
    uint64_t  retrans_bytes;
    uint32_t  data_segs;
    uint32_t  retrans_segs;
    uint32_t  rtt_us;
    uint32_t  rttvar_us;
    uint32_t  min_rtt_us;
    uint64_t  delivery_rate;
} ipr_record_t;

typedef struct {
    uint32_t  key_id;
    uint32_t  sender_id;
    uint64_t  instance_id;
    uint64_t  sequence;
    uint64_t  time_ms;
    uint8_t   tag_len;
} ipr_header_t;

/* A keyed HMAC-SHA256 made once; each datagram re-initialises it. */
typedef struct {
    EVP_MAC      *mac;
    EVP_MAC_CTX  *ctx;
} ipr_signer_t;

int ipr_signer_init(ipr_signer_t *s, const uint8_t *secret, size_t len);
void ipr_signer_free(ipr_signer_t *s);

/* Pack one record into 120 bytes at p. */
void ipr_pack_record(uint8_t *p, const ipr_record_t *r);

/*
 * Write the header for `count` records at buf, then sign buf[0 .. 44 +
 * count * 120) and append the tag. Returns the datagram's length, or 0.
 */
size_t ipr_finish_datagram(uint8_t *buf, const ipr_header_t *h, unsigned count,
    ipr_signer_t *s);

/* Address helpers: 4 or 16 bytes to the 16-byte wire form; a traffic type
 * name to its 16-byte field. */
void ipr_address_v4(uint8_t out[16], const uint8_t in[4]);
void ipr_set_type(uint8_t out[IPR_TYPE_SIZE], const uint8_t *name, size_t len);

#endif
