/*
 * Golden-vector harness for ipr_wire.c. Reads, on stdin,
 *   H key_id sender_id instance_id sequence time_ms tag_len secret_hex
 *   R client_hex server_hex type_hex|- port status flags http_version requests
 *     duration_us response_bytes wire_bytes retrans_bytes data_segs retrans_segs
 *     rtt_us rttvar_us min_rtt_us delivery_rate            (one line per record)
 * and prints the signed datagram in hex.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../ipr_wire.h"

static size_t
unhex(const char *s, uint8_t *out, size_t max)
{
    size_t  n = 0;

    while (s[0] && s[1] && n < max) {
        sscanf(s, "%2hhx", &out[n++]);
        s += 2;
    }
    return n;
}

int
main(void)
{
    static uint8_t  buf[IPR_MAX_DATAGRAM];
    char            line[4096], secret_hex[256], client[64], server[64], type[64];
    uint8_t         secret[128], name[IPR_TYPE_SIZE];
    ipr_header_t    h;
    ipr_record_t    r;
    ipr_signer_t    s;
    unsigned        count = 0, tag_len, port, status, flags, httpv;
    size_t          n, i;

    if (!fgets(line, sizeof(line), stdin)
        || sscanf(line, "H %u %u %lu %lu %lu %u %255s", &h.key_id, &h.sender_id,
                  &h.instance_id, &h.sequence, &h.time_ms, &tag_len, secret_hex) != 7)
    {
        fprintf(stderr, "bad header line\n");
        return 2;
    }
    h.tag_len = (uint8_t) tag_len;
    if (ipr_signer_init(&s, secret, unhex(secret_hex, secret, sizeof(secret))) != 0) {
        fprintf(stderr, "cannot make the HMAC\n");
        return 2;
    }
    while (fgets(line, sizeof(line), stdin)) {
        memset(&r, 0, sizeof(r));
        if (sscanf(line, "R %63s %63s %63s %u %u %u %u %u %u %lu %lu %lu %u %u %u %u %u %lu",
                   client, server, type, &port, &status, &flags, &httpv, &r.requests,
                   &r.duration_us, &r.response_bytes, &r.wire_bytes, &r.retrans_bytes,
                   &r.data_segs, &r.retrans_segs, &r.rtt_us, &r.rttvar_us, &r.min_rtt_us,
                   &r.delivery_rate) != 18)
        {
            fprintf(stderr, "bad record line: %s", line);
            return 2;
        }
        unhex(client, r.client, 16);
        unhex(server, r.server, 16);
        n = strcmp(type, "-") == 0 ? 0 : unhex(type, name, sizeof(name));
        ipr_set_type(r.type, name, n);
        r.server_port = port;
        r.status = status;
        r.flags = flags;
        r.http_version = httpv;
        ipr_pack_record(buf + IPR_HEADER_SIZE + count * IPR_RECORD_SIZE, &r);
        count++;
    }
    n = ipr_finish_datagram(buf, &h, count, &s);
    if (n == 0) {
        fprintf(stderr, "cannot finish the datagram\n");
        return 2;
    }
    for (i = 0; i < n; i++) {
        printf("%02x", buf[i]);
    }
    printf("\n");
    ipr_signer_free(&s);
    return 0;
}
