/* blast: send pre-generated datagrams to a UDP port with sendmmsg.
 *
 *   blast FILE HOST PORT [--rate R] [--count N] [--burst B] [--max-queue BYTES]
 *
 * FILE holds datagrams, each preceded by its length as a little-endian u32;
 * they are sent once, in order (each has its own sequence number), COUNT
 * of them or all. By default as fast as the kernel takes them. --rate paces
 * R datagrams/s in bursts of B against absolute deadlines, so a late wake-up
 * is caught up rather than lowering the rate. --max-queue keeps the
 * receiver saturated without overflowing it: before each burst, while the
 * receiving socket (found by PORT in /proc/net/udp{,6}) holds more than
 * BYTES, wait. Prints one JSON line: sent, bytes, start_ns, end_ns
 * (CLOCK_MONOTONIC, the clock of Python's time.monotonic), errors, waits.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAX_BURST 256
#define STALL_NS 10000000000ull /* --max-queue gives up on a receiver stuck this long */

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + ts.tv_nsec;
}

/* rx_queue (bytes) of the UDP socket bound to port, or -1 if there is none. */
static long rx_queue(int port)
{
    static const char *tables[] = {"/proc/net/udp", "/proc/net/udp6"};
    char line[512], local[64], queues[32];
    for (int t = 0; t < 2; t++) {
        FILE *f = fopen(tables[t], "r");
        if (!f)
            continue;
        while (fgets(line, sizeof line, f)) {
            /* sl local_address rem_address st tx_queue:rx_queue ... */
            if (sscanf(line, "%*s %63s %*s %*s %31s", local, queues) != 2)
                continue;
            char *lport = strrchr(local, ':'), *rx = strchr(queues, ':');
            if (lport && rx && strtol(lport + 1, NULL, 16) == port) {
                fclose(f);
                return strtol(rx + 1, NULL, 16);
            }
        }
        fclose(f);
    }
    return -1;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: %s FILE HOST PORT [--rate R] [--count N] [--burst B] [--max-queue BYTES]\n",
                argv[0]);
        return 2;
    }
    double rate = 0;
    long limit = 0, max_queue = 0;
    int burst = 0;
    for (int i = 4; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--rate"))
            rate = atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--count"))
            limit = atol(argv[i + 1]);
        else if (!strcmp(argv[i], "--burst"))
            burst = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--max-queue"))
            max_queue = atol(argv[i + 1]);
        else {
            fprintf(stderr, "unknown option %s\n", argv[i]);
            return 2;
        }
    }
    if ((argc - 4) % 2) {
        fprintf(stderr, "option %s needs a value\n", argv[argc - 1]);
        return 2;
    }
    if (!burst)
        burst = rate > 0 ? 50 : 64;
    int port = atoi(argv[3]);
    if (burst < 1 || burst > MAX_BURST) {
        fprintf(stderr, "burst must be 1..%d\n", MAX_BURST);
        return 2;
    }

    int fd = open(argv[1], O_RDONLY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0) {
        perror(argv[1]);
        return 1;
    }
    const uint8_t *data = mmap(NULL, st.st_size, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
    if (data == MAP_FAILED) {
        perror("mmap");
        return 1;
    }

    /* Index the file first so the send loop only walks an array. */
    long n = 0, cap = 1 << 16;
    struct iovec *iov = malloc(cap * sizeof *iov);
    for (off_t off = 0; off + 4 <= st.st_size;) {
        uint32_t len;
        memcpy(&len, data + off, 4);
        if (off + 4 + (off_t)len > st.st_size) {
            fprintf(stderr, "truncated datagram at offset %lld\n", (long long)off);
            return 1;
        }
        if (n == cap)
            iov = realloc(iov, (cap *= 2) * sizeof *iov);
        iov[n].iov_base = (void *)(data + off + 4);
        iov[n].iov_len = len;
        n++;
        off += 4 + len;
    }
    if (limit > 0 && limit < n)
        n = limit;

    int family = strchr(argv[2], ':') ? AF_INET6 : AF_INET;
    struct sockaddr_storage ss = {0};
    socklen_t sslen;
    if (family == AF_INET) {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        a->sin_family = AF_INET;
        a->sin_port = htons(port);
        sslen = sizeof *a;
        if (inet_pton(AF_INET, argv[2], &a->sin_addr) != 1)
            goto badhost;
    } else {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons(port);
        sslen = sizeof *a;
        if (inet_pton(AF_INET6, argv[2], &a->sin6_addr) != 1)
            goto badhost;
    }
    int s = socket(family, SOCK_DGRAM, 0);
    int sndbuf = 4 << 20;
    setsockopt(s, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
    /* Connected: no per-message address, and the route is looked up once. */
    if (s < 0 || connect(s, (struct sockaddr *)&ss, sslen) < 0) {
        perror("socket/connect");
        return 1;
    }

    struct mmsghdr msgs[MAX_BURST];
    memset(msgs, 0, sizeof msgs);
    long sent = 0, errors = 0, waits = 0;
    uint64_t bytes = 0;
    uint64_t start = now_ns();
    uint64_t interval = rate > 0 ? (uint64_t)(burst * 1e9 / rate) : 0;
    uint64_t next = start;
    while (sent < n) {
        int k = n - sent < burst ? (int)(n - sent) : burst;
        if (max_queue) {
            uint64_t since = now_ns();
            long q;
            while ((q = rx_queue(port)) > max_queue) {
                struct timespec ts = {0, 100000};
                nanosleep(&ts, NULL);
                waits++;
                if (now_ns() - since > STALL_NS) {
                    fprintf(stderr, "receiver stalled with %ld bytes queued\n", q);
                    return 1;
                }
            }
        }
        for (int i = 0; i < k; i++) {
            msgs[i].msg_hdr.msg_iov = &iov[sent + i];
            msgs[i].msg_hdr.msg_iovlen = 1;
        }
        int r = sendmmsg(s, msgs, k, 0);
        if (r < 0) {
            /* ECONNREFUSED: an ICMP error from an earlier datagram (nobody
             * listening then); skip one datagram so the loop always ends. */
            if (errno != EINTR && errno != ENOBUFS && errno != EAGAIN) {
                errors++;
                sent++;
            }
            continue;
        }
        for (int i = 0; i < r; i++)
            bytes += iov[sent + i].iov_len;
        sent += r;
        if (interval && r == k) {
            next += interval;
            uint64_t t = now_ns();
            if (next > t) {
                struct timespec ts = {next / 1000000000u, next % 1000000000u};
                clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
            }
        }
    }
    uint64_t end = now_ns();
    printf("{\"sent\": %ld, \"bytes\": %llu, \"start_ns\": %llu, \"end_ns\": %llu, \"errors\": %ld, "
           "\"waits\": %ld}\n", sent - errors, (unsigned long long)bytes, (unsigned long long)start,
           (unsigned long long)end, errors, waits);
    return 0;

badhost:
    fprintf(stderr, "bad address %s\n", argv[2]);
    return 2;
}
