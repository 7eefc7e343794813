/* recvloop: the receive ceiling, a minimal UDP receiver to compare the collector with.
 *
 *   recvloop HOST PORT [--count N] [--rcvbuf BYTES] [--recvfrom] [--hmac KEYHEX]
 *            [--drain-from BYTES]
 *
 * Counts datagrams and bytes until SIGTERM or N datagrams, then prints one
 * JSON line: datagrams, bytes, bad_tags, first_ns, last_ns (CLOCK_MONOTONIC),
 * cpu_s (user + system), busy_s and total_cpu_s. By default it receives in batches with
 * recvmmsg; --recvfrom takes one datagram per system call as the collector
 * does.
 *
 * A sender on loopback is slower than this loop, so receiving live measures
 * the sender. --drain-from measures the receiver: it sleeps until BYTES are
 * queued (SO_MEMINFO), or the queue stops growing, then drains the queue
 * without blocking; busy_s and cpu_s cover the drains only. --hmac (built with -DWITH_OPENSSL) also checks each datagram's
 * HMAC-SHA256 tag (the last 16 bytes), re-using one keyed context.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/sock_diag.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#ifdef WITH_OPENSSL
/* The HMAC_CTX calls are deprecated in OpenSSL 3 but still the cheapest
 * per-message path (EVP_MAC has no allocation-free re-key). */
#define OPENSSL_SUPPRESS_DEPRECATED
#include <openssl/crypto.h>
#include <openssl/hmac.h>
#endif

#define BATCH 64
#define BUFSZ 65536
#define TAG 16

static volatile sig_atomic_t stop;

static void on_term(int sig)
{
    (void)sig;
    stop = 1;
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + ts.tv_nsec;
}

static double cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static long queued(int s)
{
    uint32_t mi[SK_MEMINFO_VARS];
    socklen_t len = sizeof mi;
    if (getsockopt(s, SOL_SOCKET, SO_MEMINFO, mi, &len) < 0)
        return -1;
    return mi[SK_MEMINFO_RMEM_ALLOC];
}

#ifdef WITH_OPENSSL
static HMAC_CTX *ctx;

static int tag_ok(const uint8_t *d, size_t n)
{
    unsigned char mac[32];
    unsigned int len;
    if (n < TAG)
        return 0;
    HMAC_Init_ex(ctx, NULL, 0, NULL, NULL); /* same key: restarts from the keyed state */
    HMAC_Update(ctx, d, n - TAG);
    HMAC_Final(ctx, mac, &len);
    return CRYPTO_memcmp(mac, d + n - TAG, TAG) == 0;
}
#endif

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s HOST PORT [--count N] [--rcvbuf BYTES] [--recvfrom] [--hmac KEYHEX]\n", argv[0]);
        return 2;
    }
    long limit = 0, drain_from = 0;
    int rcvbuf = 32 << 20, single = 0, hmac = 0;
    for (int i = 3; i < argc; i++) {
        if (!strcmp(argv[i], "--count") && i + 1 < argc)
            limit = atol(argv[++i]);
        else if (!strcmp(argv[i], "--rcvbuf") && i + 1 < argc)
            rcvbuf = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--drain-from") && i + 1 < argc)
            drain_from = atol(argv[++i]);
        else if (!strcmp(argv[i], "--recvfrom"))
            single = 1;
        else if (!strcmp(argv[i], "--hmac") && i + 1 < argc) {
#ifdef WITH_OPENSSL
            const char *hex = argv[++i];
            size_t klen = strlen(hex) / 2;
            unsigned char key[256];
            if (klen == 0 || klen > sizeof key)
                return 2;
            for (size_t j = 0; j < klen; j++)
                sscanf(hex + 2 * j, "%2hhx", &key[j]);
            ctx = HMAC_CTX_new();
            HMAC_Init_ex(ctx, key, (int)klen, EVP_sha256(), NULL);
            hmac = 1;
#else
            fprintf(stderr, "built without OpenSSL: --hmac unavailable\n");
            return 2;
#endif
        } else {
            fprintf(stderr, "unknown argument %s\n", argv[i]);
            return 2;
        }
    }

    int family = strchr(argv[1], ':') ? AF_INET6 : AF_INET;
    struct sockaddr_storage ss = {0};
    socklen_t sslen;
    if (family == AF_INET) {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        a->sin_family = AF_INET;
        a->sin_port = htons(atoi(argv[2]));
        sslen = sizeof *a;
        if (inet_pton(AF_INET, argv[1], &a->sin_addr) != 1)
            return 2;
    } else {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons(atoi(argv[2]));
        sslen = sizeof *a;
        if (inet_pton(AF_INET6, argv[1], &a->sin6_addr) != 1)
            return 2;
    }
    int s = socket(family, SOCK_DGRAM, 0);
    /* The collector's setting: FORCE passes net.core.rmem_max as root. */
    if (setsockopt(s, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof rcvbuf) < 0)
        setsockopt(s, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    if (bind(s, (struct sockaddr *)&ss, sslen) < 0) {
        perror("bind");
        return 1;
    }

    /* No SA_RESTART: SIGTERM interrupts the blocking receive. */
    struct sigaction sa = {0};
    sa.sa_handler = on_term;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    static uint8_t bufs[BATCH][BUFSZ];
    struct iovec iov[BATCH];
    struct mmsghdr msgs[BATCH];
    struct sockaddr_storage from[BATCH];
    memset(msgs, 0, sizeof msgs);
    for (int i = 0; i < BATCH; i++) {
        iov[i].iov_base = bufs[i];
        iov[i].iov_len = BUFSZ;
        msgs[i].msg_hdr.msg_iov = &iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
        msgs[i].msg_hdr.msg_name = &from[i];
    }
    printf("{\"ready\": true}\n");
    fflush(stdout);

    long count = 0, bad = 0;
    uint64_t bytes = 0, first = 0, last = 0, busy = 0, drain_start = 0;
    double cpu = 0, cpu0 = cpu_s(), start_cpu = cpu0;
    int flags = 0;
    while (!stop && (limit == 0 || count < limit)) {
        int r;
        if (drain_from && !drain_start) {
            /* Sleep (uncounted) until the queue is full enough or settles. */
            long q, prev = -1;
            while (!stop && (q = queued(s)) < drain_from && (q == 0 || q != prev)) {
                prev = q;
                struct timespec ts = {0, 2000000};
                nanosleep(&ts, NULL);
            }
            if (stop)
                break;
            drain_start = now_ns();
            cpu0 = cpu_s();
            flags = MSG_DONTWAIT;
        }
        if (single) {
            socklen_t fl = sizeof from[0];
            ssize_t m = recvfrom(s, bufs[0], BUFSZ, flags, (struct sockaddr *)&from[0], &fl);
            if (m >= 0)
                msgs[0].msg_len = (unsigned)m;
            r = m < 0 ? -1 : 1;
        } else {
            for (int i = 0; i < BATCH; i++)
                msgs[i].msg_hdr.msg_namelen = sizeof from[i];
            r = recvmmsg(s, msgs, BATCH, flags ? flags : MSG_WAITFORONE, NULL);
        }
        if (r < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN && drain_start) { /* drained: close this round */
                busy += now_ns() - drain_start;
                cpu += cpu_s() - cpu0;
                drain_start = 0;
                continue;
            }
            perror("receive");
            return 1;
        }
        last = now_ns();
        if (!first)
            first = last;
        for (int i = 0; i < r; i++) {
            bytes += msgs[i].msg_len;
#ifdef WITH_OPENSSL
            if (hmac && !tag_ok(bufs[i], msgs[i].msg_len))
                bad++;
#endif
        }
        count += r;
    }
    if (!drain_from) {
        busy = last - first;
        cpu = cpu_s() - cpu0;
    } else if (drain_start) {
        busy += now_ns() - drain_start;
        cpu += cpu_s() - cpu0;
    }
    printf("{\"datagrams\": %ld, \"bytes\": %llu, \"bad_tags\": %ld, \"hmac\": %s, "
           "\"first_ns\": %llu, \"last_ns\": %llu, \"busy_s\": %.6f, \"cpu_s\": %.6f, "
           "\"total_cpu_s\": %.6f}\n",
           count, (unsigned long long)bytes, bad, hmac ? "true" : "false",
           (unsigned long long)first, (unsigned long long)last, busy / 1e9, cpu, cpu_s() - start_cpu);
    return 0;
}
