/* collector._receive: the collector's receive loop, compiled.
 *
 * The twin of collector/receive.py's Receiver: the same interface, the same
 * verdicts, counters, replay state and record bytes (the module docstring
 * there describes the interface; tests/test_collector_receive.py runs both).
 * What differs is how: datagrams come in batches from recvmmsg, each key's
 * HMAC-SHA256 inner and outer states are computed once per configuration,
 * and the per-datagram work allocates nothing.
 *
 * The checks and their order are docs/wire-format.md's. Only the source
 * address check calls back into Python (the key's ``allows``), and only when
 * the (key, address) pair is not in the cache.
 */
#define PY_SSIZE_T_CLEAN
#define _GNU_SOURCE
#include <Python.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

/* SHA256_Init/Update/Final are deprecated in OpenSSL 3 but are the only
 * calls that let a precomputed keyed state be copied per message without
 * an allocation (EVP_MD_CTX_copy allocates). */
#define OPENSSL_SUPPRESS_DEPRECATED
#include <openssl/crypto.h>
#include <openssl/sha.h>

#define HEADER_SIZE 44
#define RECORD_SIZE 120
#define TAG_MIN 16
#define TAG_MAX 32
#define BATCH 64                  /* datagrams per recvmmsg call */
#define SOURCE_CACHE_LIMIT 65536  /* as receive.py: the cache starts again past it */

enum {
    R_GARBAGE, R_BAD_VERSION, R_TRUNCATED, R_OVERSIZED, R_MALFORMED, R_UNKNOWN_KEY,
    R_DISABLED_KEY, R_SOURCE_NOT_ALLOWED, R_SHORT_TAG, R_BAD_TAG, R_SENDER_NOT_ALLOWED,
    R_STALE, R_FUTURE, R_REPLAYED, N_REASONS, R_ACCEPTED = N_REASONS, R_ERROR
};
static const char *const REASON_NAMES[N_REASONS + 1] = {
    "garbage", "bad_version", "truncated", "oversized", "malformed", "unknown_key",
    "disabled_key", "source_not_allowed", "short_tag", "bad_tag", "sender_not_allowed",
    "stale", "future", "replayed", "accepted",
};
static PyObject *reason_str[N_REASONS + 1];

static inline uint16_t be16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static inline uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static inline uint64_t be64(const uint8_t *p) { return (uint64_t)be32(p) << 32 | be32(p + 4); }

static inline uint64_t mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

/* ------------------------------------------------------------------------
 * Tables: open addressing, linear probing, capacity a power of two, at most
 * half full. Each holds fixed-size entries whose first field is ``used``. */

typedef struct {
    uint32_t id;
    int enabled;
    SHA256_CTX inner, outer;  /* after the padded key's block */
    uint32_t *senders;        /* sorted */
    size_t nsenders;
    PyObject *allows;         /* the key's allows(address) -> bool */
} Key;

typedef struct {
    int used;
    uint32_t key_id, sender;
    uint64_t instance, highest, first;
    int64_t last_ms;
    uint64_t *bits;  /* ring of window bits: sequence s at s % window */
} Stream;

typedef struct {
    int used;
    uint32_t sender;
    uint64_t datagrams, resets;
    int64_t lost;
} Sender;

typedef struct {
    int used;
    int allowed;
    uint32_t key_id, family;
    uint8_t addr[16];
} Source;

#define TABLE(name, T)                                                       \
    typedef struct { T *slots; size_t cap, len; } name

TABLE(StreamTable, Stream);
TABLE(SenderTable, Sender);
TABLE(SourceTable, Source);

static int table_init(void **slots, size_t *cap, size_t *len, size_t size, size_t want)
{
    size_t c = 16;
    while (c < 2 * want)
        c <<= 1;
    void *s = PyMem_Calloc(c, size);
    if (s == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    *slots = s;
    *cap = c;
    *len = 0;
    return 0;
}

static inline uint64_t stream_hash(uint32_t k, uint32_t s, uint64_t i)
{
    return mix(((uint64_t)k << 32 | s) ^ mix(i));
}

/* The stream's slot: its own, or the empty one where it goes. */
static Stream *stream_slot(StreamTable *t, uint32_t k, uint32_t s, uint64_t i)
{
    size_t m = t->cap - 1, at = stream_hash(k, s, i) & m;
    for (;;) {
        Stream *e = &t->slots[at];
        if (!e->used || (e->key_id == k && e->sender == s && e->instance == i))
            return e;
        at = (at + 1) & m;
    }
}

static int stream_grow(StreamTable *t)
{
    StreamTable n;
    if (table_init((void **)&n.slots, &n.cap, &n.len, sizeof(Stream), t->len + 1) < 0)
        return -1;
    for (size_t j = 0; j < t->cap; j++) {
        Stream *e = &t->slots[j];
        if (e->used) {
            *stream_slot(&n, e->key_id, e->sender, e->instance) = *e;
            n.len++;
        }
    }
    PyMem_Free(t->slots);
    *t = n;
    return 0;
}

static Sender *sender_slot(SenderTable *t, uint32_t s)
{
    size_t m = t->cap - 1, at = mix(s) & m;
    for (;;) {
        Sender *e = &t->slots[at];
        if (!e->used || e->sender == s)
            return e;
        at = (at + 1) & m;
    }
}

static int sender_grow(SenderTable *t)
{
    SenderTable n;
    if (table_init((void **)&n.slots, &n.cap, &n.len, sizeof(Sender), t->len + 1) < 0)
        return -1;
    for (size_t j = 0; j < t->cap; j++)
        if (t->slots[j].used) {
            *sender_slot(&n, t->slots[j].sender) = t->slots[j];
            n.len++;
        }
    PyMem_Free(t->slots);
    *t = n;
    return 0;
}

static uint64_t source_hash(uint32_t k, uint32_t family, const uint8_t *a)
{
    uint64_t x, y;
    memcpy(&x, a, 8);
    memcpy(&y, a + 8, 8);
    return mix(((uint64_t)k << 32 | family) ^ mix(x ^ mix(y)));
}

static Source *source_slot(SourceTable *t, uint32_t k, uint32_t family, const uint8_t *a)
{
    size_t m = t->cap - 1, at = source_hash(k, family, a) & m;
    for (;;) {
        Source *e = &t->slots[at];
        if (!e->used || (e->key_id == k && e->family == family && !memcmp(e->addr, a, 16)))
            return e;
        at = (at + 1) & m;
    }
}

/* ------------------------------------------------------------------------
 * The Receiver */

typedef struct {
    PyObject_HEAD
    /* configuration */
    size_t max_datagram;
    int min_tag_len;
    double max_age_ms, max_future_ms;
    uint64_t window;   /* 0 until configured */
    size_t words;      /* uint64 words of a stream's ring */
    Key *keys;         /* sorted by id */
    size_t nkeys;
    SourceTable sources;
    /* receive buffers */
    uint8_t *bufs;
    size_t bufsize;
    struct mmsghdr msgs[BATCH];
    struct iovec iov[BATCH];
    struct sockaddr_storage addrs[BATCH];
    /* state */
    StreamTable streams;
    SenderTable senders;
    int dirty;
    /* counters */
    uint64_t received, accepted, records, rejects[N_REASONS];
    /* kept records and their minute runs */
    uint8_t *rec;
    size_t rec_len, rec_cap;
    uint64_t (*runs)[2];
    size_t nruns, runs_cap;
} Receiver;

static void free_keys(Key *keys, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        PyMem_Free(keys[i].senders);
        Py_XDECREF(keys[i].allows);
    }
    PyMem_Free(keys);
}

static void free_streams(StreamTable *t)
{
    if (t->slots == NULL)
        return;
    for (size_t j = 0; j < t->cap; j++)
        if (t->slots[j].used)
            PyMem_Free(t->slots[j].bits);
    PyMem_Free(t->slots);
    t->slots = NULL;
}

static void Receiver_dealloc(Receiver *self)
{
    free_keys(self->keys, self->nkeys);
    PyMem_Free(self->sources.slots);
    PyMem_Free(self->bufs);
    free_streams(&self->streams);
    PyMem_Free(self->senders.slots);
    PyMem_Free(self->rec);
    PyMem_Free(self->runs);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

static int cmp_key(const void *a, const void *b)
{
    return cmp_u32(&((const Key *)a)->id, &((const Key *)b)->id);
}

static int get_long(PyObject *obj, const char *name, long long low, long long high, long long *out)
{
    PyObject *v = PyObject_GetAttrString(obj, name);
    if (v == NULL)
        return -1;
    long long x = PyLong_AsLongLong(v);
    Py_DECREF(v);
    if (x == -1 && PyErr_Occurred())
        return -1;
    if (x < low || x > high) {
        PyErr_Format(PyExc_ValueError, "%s must be in %lld..%lld, not %lld", name, low, high, x);
        return -1;
    }
    *out = x;
    return 0;
}

static int get_double(PyObject *obj, const char *name, double *out)
{
    PyObject *v = PyObject_GetAttrString(obj, name);
    if (v == NULL)
        return -1;
    double x = PyFloat_AsDouble(v);
    Py_DECREF(v);
    if (x == -1.0 && PyErr_Occurred())
        return -1;
    *out = x;
    return 0;
}

static int get_u32(PyObject *v, uint32_t *out)
{
    unsigned long long x = PyLong_AsUnsignedLongLong(v);
    if (x == (unsigned long long)-1 && PyErr_Occurred())
        return -1;
    if (x > UINT32_MAX) {
        PyErr_SetString(PyExc_OverflowError, "a key or sender id is larger than 32 bits");
        return -1;
    }
    *out = (uint32_t)x;
    return 0;
}

/* One key from a collector.config.Key: id, secret, enabled, sender_ids, allows. */
static int load_key(PyObject *k, Key *key)
{
    PyObject *v = NULL, *it = NULL, *item;
    memset(key, 0, sizeof *key);
    if ((v = PyObject_GetAttrString(k, "id")) == NULL || get_u32(v, &key->id) < 0)
        goto fail;
    Py_CLEAR(v);
    if ((v = PyObject_GetAttrString(k, "enabled")) == NULL || (key->enabled = PyObject_IsTrue(v)) < 0)
        goto fail;
    Py_CLEAR(v);
    if ((v = PyObject_GetAttrString(k, "secret")) == NULL)
        goto fail;
    char *secret;
    Py_ssize_t slen;
    if (PyBytes_AsStringAndSize(v, &secret, &slen) < 0)
        goto fail;
    uint8_t block[64] = {0}, pad[64];
    if (slen > 64)
        SHA256((const uint8_t *)secret, (size_t)slen, block);
    else
        memcpy(block, secret, (size_t)slen);
    Py_CLEAR(v);
    for (int i = 0; i < 64; i++)
        pad[i] = block[i] ^ 0x36;
    SHA256_Init(&key->inner);
    SHA256_Update(&key->inner, pad, 64);
    for (int i = 0; i < 64; i++)
        pad[i] = block[i] ^ 0x5c;
    SHA256_Init(&key->outer);
    SHA256_Update(&key->outer, pad, 64);
    OPENSSL_cleanse(block, sizeof block);
    OPENSSL_cleanse(pad, sizeof pad);
    if ((v = PyObject_GetAttrString(k, "sender_ids")) == NULL)
        goto fail;
    Py_ssize_t n = PyObject_Length(v);
    if (n < 0)
        goto fail;
    key->senders = PyMem_Malloc(sizeof(uint32_t) * (size_t)(n ? n : 1));
    if (key->senders == NULL) {
        PyErr_NoMemory();
        goto fail;
    }
    if ((it = PyObject_GetIter(v)) == NULL)
        goto fail;
    while ((item = PyIter_Next(it)) != NULL) {
        int bad = key->nsenders >= (size_t)n || get_u32(item, &key->senders[key->nsenders]) < 0;
        Py_DECREF(item);
        if (bad) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_RuntimeError, "sender_ids changed while read");
            goto fail;
        }
        key->nsenders++;
    }
    if (PyErr_Occurred())
        goto fail;
    qsort(key->senders, key->nsenders, sizeof(uint32_t), cmp_u32);
    Py_CLEAR(it);
    Py_CLEAR(v);
    if ((key->allows = PyObject_GetAttrString(k, "allows")) == NULL)
        goto fail;
    return 0;
fail:
    Py_XDECREF(v);
    Py_XDECREF(it);
    return -1;
}

static PyObject *Receiver_configure(Receiver *self, PyObject *cfg)
{
    long long max_datagram, min_tag_len, window;
    double max_age, max_future;
    if (get_long(cfg, "max_datagram", 0, 1 << 20, &max_datagram) < 0
        || get_long(cfg, "min_tag_len", 0, 255, &min_tag_len) < 0
        || get_long(cfg, "replay_window", 1, 1 << 24, &window) < 0
        || get_double(cfg, "max_age", &max_age) < 0 || get_double(cfg, "max_future", &max_future) < 0)
        return NULL;
    if (self->window && (uint64_t)window != self->window && self->streams.len) {
        PyErr_Format(PyExc_ValueError, "replay_window cannot change from %llu to %lld while streams are held",
                     (unsigned long long)self->window, window);
        return NULL;
    }
    PyObject *keys = PyObject_GetAttrString(cfg, "keys");
    if (keys == NULL)
        return NULL;
    PyObject *values = PyMapping_Values(keys);
    Py_DECREF(keys);
    if (values == NULL)
        return NULL;
    size_t nkeys = (size_t)PyList_GET_SIZE(values);
    Key *table = PyMem_Calloc(nkeys ? nkeys : 1, sizeof(Key));
    size_t done = 0;
    if (table == NULL) {
        Py_DECREF(values);
        return PyErr_NoMemory();
    }
    for (; done < nkeys; done++)
        if (load_key(PyList_GET_ITEM(values, (Py_ssize_t)done), &table[done]) < 0) {
            free_keys(table, done + 1);
            Py_DECREF(values);
            return NULL;
        }
    Py_DECREF(values);
    qsort(table, nkeys, sizeof(Key), cmp_key);
    size_t bufsize = (size_t)max_datagram + 1;
    uint8_t *bufs = PyMem_Malloc(bufsize * BATCH);
    SourceTable sources;
    if (bufs == NULL || table_init((void **)&sources.slots, &sources.cap, &sources.len, sizeof(Source),
                                   1024) < 0) {
        PyMem_Free(bufs);
        free_keys(table, nkeys);
        return bufs == NULL ? PyErr_NoMemory() : NULL;
    }
    /* Everything is ready: nothing below fails. */
    free_keys(self->keys, self->nkeys);
    self->keys = table;
    self->nkeys = nkeys;
    PyMem_Free(self->sources.slots);
    self->sources = sources;
    PyMem_Free(self->bufs);
    self->bufs = bufs;
    self->bufsize = bufsize;
    for (int i = 0; i < BATCH; i++) {
        self->iov[i].iov_base = bufs + (size_t)i * bufsize;
        self->iov[i].iov_len = bufsize;
    }
    self->max_datagram = (size_t)max_datagram;
    self->min_tag_len = (int)min_tag_len;
    self->max_age_ms = max_age * 1000;
    self->max_future_ms = max_future * 1000;
    self->window = (uint64_t)window;
    self->words = ((size_t)window + 63) / 64;
    Py_RETURN_NONE;
}

static int Receiver_init(Receiver *self, PyObject *args, PyObject *kwds)
{
    PyObject *cfg;
    static char *kwlist[] = {"cfg", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O", kwlist, &cfg))
        return -1;
    if (self->streams.slots == NULL
        && (table_init((void **)&self->streams.slots, &self->streams.cap, &self->streams.len,
                       sizeof(Stream), 16) < 0
            || table_init((void **)&self->senders.slots, &self->senders.cap, &self->senders.len,
                          sizeof(Sender), 16) < 0))
        return -1;
    PyObject *r = Receiver_configure(self, cfg);
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    return 0;
}

/* ------------------------------------------------------------------------
 * One datagram */

static const Key *find_key(const Receiver *self, uint32_t id)
{
    size_t lo = 0, hi = self->nkeys;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (self->keys[mid].id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < self->nkeys && self->keys[lo].id == id ? &self->keys[lo] : NULL;
}

static int has_sender(const Key *key, uint32_t s)
{
    return bsearch(&s, key->senders, key->nsenders, sizeof(uint32_t), cmp_u32) != NULL;
}

/* d > limit for an integer d and a limit >= 0, exactly as Python compares an int with a float. */
static int exceeds(__int128 d, double limit)
{
    /* The limits are at most an hour in ms, far inside the range where a
     * double holds every integer. */
    if (d > ((__int128)1 << 53))
        return 1;
    if (d < -((__int128)1 << 53))
        return 0;
    return (double)(int64_t)d > limit;
}

/* Whether the key allows the source: from the cache, or by asking the key
 * with the address as Python names it (``text``, or made from the bytes on
 * a miss). -1 on error. */
static int source_allowed(Receiver *self, const Key *key, uint32_t family, const uint8_t *addr,
                          PyObject *text_or_null)
{
    Source *e = NULL;
    if (family) {
        e = source_slot(&self->sources, key->id, family, addr);
        if (e->used)
            return e->allowed;
    }
    char text[INET6_ADDRSTRLEN] = "";
    if (text_or_null == NULL && family)
        inet_ntop((int)family, addr, text, sizeof text);
    PyObject *r = text_or_null ? PyObject_CallOneArg(key->allows, text_or_null)
                               : PyObject_CallFunction(key->allows, "s", text);
    if (r == NULL)
        return -1;
    int ok = PyObject_IsTrue(r);
    Py_DECREF(r);
    if (ok < 0 || !family)
        return ok;
    if (self->sources.len > SOURCE_CACHE_LIMIT) {
        memset(self->sources.slots, 0, self->sources.cap * sizeof(Source));
        self->sources.len = 0;
        e = source_slot(&self->sources, key->id, family, addr);
    } else if (2 * (self->sources.len + 1) > self->sources.cap) {
        SourceTable n;
        if (table_init((void **)&n.slots, &n.cap, &n.len, sizeof(Source), self->sources.len + 1) < 0)
            return -1;
        for (size_t j = 0; j < self->sources.cap; j++) {
            Source *o = &self->sources.slots[j];
            if (o->used) {
                *source_slot(&n, o->key_id, o->family, o->addr) = *o;
                n.len++;
            }
        }
        PyMem_Free(self->sources.slots);
        self->sources = n;
        e = source_slot(&self->sources, key->id, family, addr);
    }
    e->used = 1;
    e->allowed = ok;
    e->key_id = key->id;
    e->family = family;
    memcpy(e->addr, addr, 16);
    self->sources.len++;
    return ok;
}

static inline int bit_get(const uint64_t *bits, uint64_t pos) { return (bits[pos >> 6] >> (pos & 63)) & 1; }
static inline void bit_set(uint64_t *bits, uint64_t pos) { bits[pos >> 6] |= (uint64_t)1 << (pos & 63); }
static inline void bit_clear(uint64_t *bits, uint64_t pos) { bits[pos >> 6] &= ~((uint64_t)1 << (pos & 63)); }

/* Book ``seq`` in its stream, as receive.py's _sequence. 1: taken, 0: a
 * replay, -1: no memory. */
static int book_sequence(Receiver *self, uint32_t key_id, uint32_t sender_id, uint64_t instance,
                         uint64_t seq, int64_t now_ms)
{
    const uint64_t window = self->window;
    if (2 * (self->senders.len + 1) > self->senders.cap && sender_grow(&self->senders) < 0)
        return -1;
    Sender *stats = sender_slot(&self->senders, sender_id);
    if (!stats->used) {
        memset(stats, 0, sizeof *stats);
        stats->used = 1;
        stats->sender = sender_id;
        self->senders.len++;
    }
    if (2 * (self->streams.len + 1) > self->streams.cap && stream_grow(&self->streams) < 0)
        return -1;
    Stream *st = stream_slot(&self->streams, key_id, sender_id, instance);
    if (!st->used) {
        uint64_t *bits = PyMem_Calloc(self->words, sizeof(uint64_t));
        if (bits == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        st->used = 1;
        st->key_id = key_id;
        st->sender = sender_id;
        st->instance = instance;
        st->highest = st->first = seq;
        st->last_ms = now_ms;
        st->bits = bits;
        bit_set(bits, seq % window);
        self->streams.len++;
    } else if (seq > st->highest) {
        uint64_t gap = seq - st->highest;
        if (gap > window) {
            /* Past the window: not loss, the stream's count starts again. */
            stats->resets++;
            memset(st->bits, 0, self->words * sizeof(uint64_t));
            st->first = seq;
        } else if (gap == window) {
            stats->lost += (int64_t)(gap - 1);
            memset(st->bits, 0, self->words * sizeof(uint64_t));
        } else {
            stats->lost += (int64_t)(gap - 1);
            uint64_t pos = (st->highest + 1) % window;
            for (uint64_t i = 1; i < gap; i++) {  /* the skipped ones leave the window unseen */
                if (!(pos & 63) && gap - i >= 64 && pos + 64 <= window) {
                    st->bits[pos >> 6] = 0;
                    pos += 64;
                    i += 63;
                } else {
                    bit_clear(st->bits, pos);
                    pos++;
                }
                if (pos == window)
                    pos = 0;
            }
        }
        bit_set(st->bits, seq % window);
        st->highest = seq;
        st->last_ms = now_ms;
    } else {
        uint64_t back = st->highest - seq;
        if (back >= window || bit_get(st->bits, seq % window))
            return 0;
        bit_set(st->bits, seq % window);
        if (seq > st->first)
            stats->lost--;  /* a late arrival counted as lost when the gap opened */
    }
    self->dirty = 1;
    stats->datagrams++;
    return 1;
}

/* A record's traffic type as wire.clean_type reads it: the bytes before the
 * first NUL, each outside printable ASCII made "?", then NULs. */
static inline void clean_type(uint8_t *t)
{
    int i = 0;
    for (; i < 16 && t[i]; i++)
        if (t[i] < 0x21 || t[i] > 0x7e)
            t[i] = '?';
    for (; i < 16; i++)
        t[i] = 0;
}

static int keep_records(Receiver *self, const uint8_t *d, size_t cut, size_t rsize, uint64_t count,
                        uint64_t time_ms)
{
    size_t need = self->rec_len + (size_t)count * RECORD_SIZE;
    if (need > self->rec_cap) {
        size_t cap = self->rec_cap ? self->rec_cap : 1 << 16;
        while (cap < need)
            cap *= 2;
        uint8_t *p = PyMem_Realloc(self->rec, cap);
        if (p == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        self->rec = p;
        self->rec_cap = cap;
    }
    uint64_t minute = time_ms / 60000;
    if (self->nruns && self->runs[self->nruns - 1][0] == minute) {
        self->runs[self->nruns - 1][1] += count;
    } else {
        if (self->nruns == self->runs_cap) {
            size_t cap = self->runs_cap ? 2 * self->runs_cap : 16;
            void *p = PyMem_Realloc(self->runs, cap * sizeof *self->runs);
            if (p == NULL) {
                PyErr_NoMemory();
                return -1;
            }
            self->runs = p;
            self->runs_cap = cap;
        }
        self->runs[self->nruns][0] = minute;
        self->runs[self->nruns][1] = count;
        self->nruns++;
    }
    uint8_t *out = self->rec + self->rec_len;
    if (rsize == RECORD_SIZE) {
        memcpy(out, d + HEADER_SIZE, cut - HEADER_SIZE);
    } else {  /* a later version's longer records: keep the version-1 prefix */
        for (size_t off = HEADER_SIZE, i = 0; off < cut; off += rsize, i++)
            memcpy(out + i * RECORD_SIZE, d + off, RECORD_SIZE);
    }
    for (uint64_t i = 0; i < count; i++)
        clean_type(out + i * RECORD_SIZE + 32);
    self->rec_len += (size_t)count * RECORD_SIZE;
    return 0;
}

/* The verdict on one datagram of n bytes: R_ACCEPTED, a reason, or R_ERROR
 * with a Python exception set. The source is (family, 16 address bytes)
 * when known (family 0: not cacheable) and, from handle(), its text. */
static int verdict(Receiver *self, const uint8_t *d, size_t n, uint32_t family, const uint8_t *addr,
                   PyObject *text_obj, int64_t now_ms)
{
    if (n > self->max_datagram)
        return R_OVERSIZED;
    if (n < 4 || memcmp(d, "IPR", 3) != 0)
        return R_GARBAGE;
    if (d[3] != 1)
        return R_BAD_VERSION;
    if (n < HEADER_SIZE + TAG_MIN)
        return R_TRUNCATED;
    unsigned tag_len = d[4], hflags = d[5];
    size_t rsize = be16(d + 6);
    uint64_t count = be16(d + 8);
    unsigned reserved = be16(d + 10);
    uint32_t key_id = be32(d + 12), sender_id = be32(d + 16);
    uint64_t instance = be64(d + 20), seq = be64(d + 28), time_ms = be64(d + 36);
    if (tag_len < TAG_MIN || tag_len > TAG_MAX || hflags || reserved || rsize < RECORD_SIZE || count == 0)
        return R_MALFORMED;
    size_t cut = n - tag_len;
    if ((uint64_t)cut != HEADER_SIZE + count * rsize)
        return R_TRUNCATED;
    const Key *key = find_key(self, key_id);
    if (key == NULL)
        return R_UNKNOWN_KEY;
    if (!key->enabled)
        return R_DISABLED_KEY;
    int ok = source_allowed(self, key, family, addr, text_obj);
    if (ok < 0)
        return R_ERROR;
    if (!ok)
        return R_SOURCE_NOT_ALLOWED;
    if ((int)tag_len < self->min_tag_len)
        return R_SHORT_TAG;
    SHA256_CTX c = key->inner;
    uint8_t md[SHA256_DIGEST_LENGTH];
    SHA256_Update(&c, d, cut);
    SHA256_Final(md, &c);
    c = key->outer;
    SHA256_Update(&c, md, sizeof md);
    SHA256_Final(md, &c);
    if (CRYPTO_memcmp(md, d + cut, tag_len) != 0)
        return R_BAD_TAG;
    /* After the tag: only a holder of the key is counted here. */
    if (!has_sender(key, sender_id))
        return R_SENDER_NOT_ALLOWED;
    if (exceeds((__int128)now_ms - (__int128)time_ms, self->max_age_ms))  /* exactly max_age is accepted */
        return R_STALE;
    if (exceeds((__int128)time_ms - (__int128)now_ms, self->max_future_ms))
        return R_FUTURE;
    int taken = book_sequence(self, key_id, sender_id, instance, seq, now_ms);
    if (taken < 0)
        return R_ERROR;
    if (!taken)
        return R_REPLAYED;
    if (keep_records(self, d, cut, rsize, count, time_ms) < 0)
        return R_ERROR;
    self->accepted++;
    self->records += count;
    return R_ACCEPTED;
}

static int count_verdict(Receiver *self, int v)
{
    if (v == R_ERROR)
        return -1;
    if (v != R_ACCEPTED)
        self->rejects[v]++;
    return 0;
}

static int64_t clock_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A socket address to (family, 16 bytes); family 0 when it is neither. */
static uint32_t raw_address(const struct sockaddr_storage *ss, uint8_t out[16])
{
    memset(out, 0, 16);
    if (ss->ss_family == AF_INET) {
        memcpy(out, &((const struct sockaddr_in *)ss)->sin_addr, 4);
        return AF_INET;
    }
    if (ss->ss_family == AF_INET6) {
        memcpy(out, &((const struct sockaddr_in6 *)ss)->sin6_addr, 16);
        return AF_INET6;
    }
    return 0;
}

static int configured(Receiver *self)
{
    if (self->window && self->streams.slots && self->bufs)
        return 1;
    PyErr_SetString(PyExc_RuntimeError, "the Receiver was not initialised");
    return 0;
}

static PyObject *Receiver_handle(Receiver *self, PyObject *args, PyObject *kwds)
{
    Py_buffer data;
    if (!configured(self))
        return NULL;
    PyObject *addr, *now_obj = Py_None;
    static char *kwlist[] = {"data", "addr", "now_ms", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "y*O|O", kwlist, &data, &addr, &now_obj))
        return NULL;
    PyObject *result = NULL, *host = NULL;
    int64_t now_ms;
    if (now_obj == Py_None) {
        now_ms = clock_ms();
    } else {
        long long x = PyLong_AsLongLong(now_obj);
        if (x == -1 && PyErr_Occurred())
            goto done;
        now_ms = x;
    }
    PyObject *zero = PyLong_FromLong(0);
    if (zero == NULL)
        goto done;
    host = PyObject_GetItem(addr, zero);
    Py_DECREF(zero);
    if (host == NULL)
        goto done;
    /* The cache key: the address parsed from its text (scope id cut, as
     * Key.allows does); text that does not parse is asked uncached. */
    uint8_t raw[16] = {0};
    uint32_t family = 0;
    const char *text = PyUnicode_Check(host) ? PyUnicode_AsUTF8(host) : NULL;
    if (PyErr_Occurred())
        goto done;
    if (text != NULL) {
        char plain[INET6_ADDRSTRLEN + 1];
        size_t len = strcspn(text, "%");
        if (len < sizeof plain) {
            memcpy(plain, text, len);
            plain[len] = 0;
            if (inet_pton(AF_INET, plain, raw) == 1)
                family = AF_INET;
            else if (inet_pton(AF_INET6, plain, raw) == 1)
                family = AF_INET6;
        }
    }
    self->received++;
    int v = verdict(self, data.buf, (size_t)data.len, family, raw, host, now_ms);
    if (count_verdict(self, v) < 0)
        goto done;
    result = Py_NewRef(reason_str[v]);
done:
    Py_XDECREF(host);
    PyBuffer_Release(&data);
    return result;
}

static PyObject *Receiver_receive(Receiver *self, PyObject *args)
{
    PyObject *sock;
    Py_ssize_t max_datagrams;
    double timeout;
    if (!configured(self) || !PyArg_ParseTuple(args, "Ond", &sock, &max_datagrams, &timeout))
        return NULL;
    int fd = PyObject_AsFileDescriptor(sock);
    if (fd < 0)
        return NULL;
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int ms = !(timeout > 0) ? 0 : timeout > 86400 ? 86400000 : (int)(timeout * 1000);  /* NaN: 0 */
    int ready;
    Py_BEGIN_ALLOW_THREADS
    ready = poll(&p, 1, ms);
    Py_END_ALLOW_THREADS
    if (ready < 0) {
        if (errno != EINTR)
            return PyErr_SetFromErrno(PyExc_OSError);
        if (PyErr_CheckSignals() < 0)
            return NULL;
        return PyLong_FromLong(0);
    }
    if (ready == 0)
        return PyLong_FromLong(0);
    Py_ssize_t taken = 0;
    while (taken < max_datagrams) {
        unsigned vlen = max_datagrams - taken < BATCH ? (unsigned)(max_datagrams - taken) : BATCH;
        for (unsigned i = 0; i < vlen; i++) {
            struct msghdr *h = &self->msgs[i].msg_hdr;
            memset(h, 0, sizeof *h);
            h->msg_iov = &self->iov[i];
            h->msg_iovlen = 1;
            h->msg_name = &self->addrs[i];
            h->msg_namelen = sizeof self->addrs[i];
        }
        int got = recvmmsg(fd, self->msgs, vlen, MSG_DONTWAIT, NULL);
        if (got < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            if (errno == EINTR) {
                if (PyErr_CheckSignals() < 0)
                    return NULL;
                break;
            }
            return PyErr_SetFromErrno(PyExc_OSError);
        }
        int64_t now_ms = clock_ms();  /* one clock read per batch: they arrived together */
        for (int i = 0; i < got; i++) {
            uint8_t raw[16];
            uint32_t family = raw_address(&self->addrs[i], raw);
            self->received++;
            int v = verdict(self, self->iov[i].iov_base, self->msgs[i].msg_len, family, raw, NULL, now_ms);
            if (count_verdict(self, v) < 0)
                return NULL;  /* no memory, or a key's allows failed */
        }
        taken += got;
        if ((unsigned)got < vlen)
            break;  /* the queue is empty */
    }
    return PyLong_FromSsize_t(taken);
}

/* ------------------------------------------------------------------------
 * Handing over */

static PyObject *runs_list(Receiver *self)
{
    PyObject *runs = PyList_New((Py_ssize_t)self->nruns);
    if (runs == NULL)
        return NULL;
    for (size_t i = 0; i < self->nruns; i++) {
        PyObject *r = Py_BuildValue("[KK]", (unsigned long long)self->runs[i][0],
                                    (unsigned long long)self->runs[i][1]);
        if (r == NULL) {
            Py_DECREF(runs);
            return NULL;
        }
        PyList_SET_ITEM(runs, (Py_ssize_t)i, r);
    }
    return runs;
}

static PyObject *Receiver_peek(Receiver *self, PyObject *unused)
{
    (void)unused;
    PyObject *records = PyByteArray_FromStringAndSize((const char *)self->rec, (Py_ssize_t)self->rec_len);
    if (records == NULL)
        return NULL;
    PyObject *runs = runs_list(self);
    if (runs == NULL) {
        Py_DECREF(records);
        return NULL;
    }
    return Py_BuildValue("(NN)", records, runs);
}

static PyObject *Receiver_take(Receiver *self, PyObject *unused)
{
    (void)unused;
    PyObject *r = Receiver_peek(self, NULL);
    if (r != NULL) {
        self->rec_len = 0;
        self->nruns = 0;
        if (self->rec_cap > (64u << 20)) {  /* a burst's buffer is not kept for ever */
            PyMem_Free(self->rec);
            self->rec = NULL;
            self->rec_cap = 0;
        }
    }
    return r;
}

static int set_item_u64(PyObject *dict, PyObject *key, unsigned long long v)
{
    PyObject *o = PyLong_FromUnsignedLongLong(v);
    int r = o == NULL ? -1 : PyDict_SetItem(dict, key, o);
    Py_XDECREF(o);
    return r;
}

static PyObject *Receiver_counters(Receiver *self, PyObject *unused)
{
    (void)unused;
    PyObject *rejects = PyDict_New(), *senders = PyDict_New(), *resets = PyDict_New(), *out = NULL;
    if (rejects == NULL || senders == NULL || resets == NULL)
        goto done;
    for (int i = 0; i < N_REASONS; i++)
        if (set_item_u64(rejects, reason_str[i], self->rejects[i]) < 0)
            goto done;
    for (size_t j = 0; j < self->senders.cap; j++) {
        Sender *e = &self->senders.slots[j];
        if (!e->used)
            continue;
        PyObject *k = PyLong_FromUnsignedLong(e->sender);
        PyObject *v = Py_BuildValue("[KL]", (unsigned long long)e->datagrams, (long long)e->lost);
        int bad = k == NULL || v == NULL || PyDict_SetItem(senders, k, v) < 0
                  || (e->resets && set_item_u64(resets, k, e->resets) < 0);
        Py_XDECREF(k);
        Py_XDECREF(v);
        if (bad)
            goto done;
    }
    out = Py_BuildValue("{sKsKsKsOsOsO}", "received", (unsigned long long)self->received,
                        "accepted", (unsigned long long)self->accepted,
                        "records", (unsigned long long)self->records,
                        "rejects", rejects, "senders", senders, "resets", resets);
done:
    Py_XDECREF(rejects);
    Py_XDECREF(senders);
    Py_XDECREF(resets);
    return out;
}

static PyObject *Receiver_reset_counters(Receiver *self, PyObject *unused)
{
    (void)unused;
    self->received = self->accepted = self->records = 0;
    memset(self->rejects, 0, sizeof self->rejects);
    for (size_t j = 0; j < self->senders.cap; j++) {
        Sender *e = &self->senders.slots[j];
        e->datagrams = 0;
        e->resets = 0;
        if (e->lost > 0)  /* a negative balance is carried over */
            e->lost = 0;
    }
    Py_RETURN_NONE;
}

/* ------------------------------------------------------------------------
 * Replay state */

/* The ring as receive.py's int: bit i set when highest - i was seen. */
static PyObject *bits_int(Receiver *self, const Stream *st)
{
    size_t nbytes = (size_t)(self->window + 7) / 8;
    uint8_t *le = PyMem_Calloc(nbytes, 1);
    if (le == NULL)
        return PyErr_NoMemory();
    uint64_t top = st->highest % self->window;
    for (uint64_t i = 0; i < self->window; i++)
        if (bit_get(st->bits, (top + self->window - i) % self->window))
            le[i >> 3] |= (uint8_t)(1u << (i & 7));
    PyObject *b = PyBytes_FromStringAndSize((const char *)le, (Py_ssize_t)nbytes);
    PyMem_Free(le);
    if (b == NULL)
        return NULL;
    PyObject *v = PyObject_CallMethod((PyObject *)&PyLong_Type, "from_bytes", "Os", b, "little");
    Py_DECREF(b);
    return v;
}

static PyObject *Receiver_streams(Receiver *self, PyObject *args, PyObject *kwds)
{
    int with_bits = 0;
    static char *kwlist[] = {"bits", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|p", kwlist, &with_bits))
        return NULL;
    PyObject *out = PyList_New(0);
    if (out == NULL)
        return NULL;
    for (size_t j = 0; j < self->streams.cap; j++) {
        Stream *st = &self->streams.slots[j];
        if (!st->used)
            continue;
        PyObject *t;
        if (with_bits) {
            PyObject *bits = bits_int(self, st);
            t = bits == NULL ? NULL
                : Py_BuildValue("(kkKKLKN)", (unsigned long)st->key_id, (unsigned long)st->sender,
                                (unsigned long long)st->instance, (unsigned long long)st->highest,
                                (long long)st->last_ms, (unsigned long long)st->first, bits);
        } else {
            t = Py_BuildValue("(kkKKLK)", (unsigned long)st->key_id, (unsigned long)st->sender,
                              (unsigned long long)st->instance, (unsigned long long)st->highest,
                              (long long)st->last_ms, (unsigned long long)st->first);
        }
        if (t == NULL || PyList_Append(out, t) < 0) {
            Py_XDECREF(t);
            Py_DECREF(out);
            return NULL;
        }
        Py_DECREF(t);
    }
    return out;
}

static PyObject *Receiver_prune(Receiver *self, PyObject *arg)
{
    if (!configured(self))
        return NULL;
    long long horizon = PyLong_AsLongLong(arg);
    if (horizon == -1 && PyErr_Occurred())
        return NULL;
    StreamTable n;
    if (table_init((void **)&n.slots, &n.cap, &n.len, sizeof(Stream), self->streams.len) < 0)
        return NULL;
    size_t dropped = 0;
    for (size_t j = 0; j < self->streams.cap; j++) {
        Stream *e = &self->streams.slots[j];
        if (!e->used)
            continue;
        if (e->last_ms < horizon) {
            PyMem_Free(e->bits);
            dropped++;
        } else {
            *stream_slot(&n, e->key_id, e->sender, e->instance) = *e;
            n.len++;
        }
    }
    PyMem_Free(self->streams.slots);
    self->streams = n;
    return PyLong_FromSize_t(dropped);
}

/* One saved stream, (key, sender, instance, highest, last ms), checked as
 * receive.py's load checks it, with the same errors. */
static int load_entry(PyObject *item, unsigned long long *k, unsigned long long *s, unsigned long long *inst,
                      unsigned long long *highest, long long *last_ms)
{
    PyObject *t = PySequence_Tuple(item);
    if (t == NULL)
        return 0;
    int ok = 0;
    if (PyTuple_GET_SIZE(t) != 5) {
        PyErr_Format(PyExc_ValueError, "a stream is (key, sender, instance, highest, last ms), not %zd values",
                     PyTuple_GET_SIZE(t));
        goto done;
    }
    for (int i = 0; i < 5; i++)
        if (!PyLong_CheckExact(PyTuple_GET_ITEM(t, i))) {
            PyErr_SetString(PyExc_TypeError, "a stream's values are integers");
            goto done;
        }
    unsigned long long *u[4] = {k, s, inst, highest};
    for (int i = 0; i < 4; i++) {
        *u[i] = PyLong_AsUnsignedLongLong(PyTuple_GET_ITEM(t, i));
        if (*u[i] == (unsigned long long)-1 && PyErr_Occurred())
            goto range;
    }
    *last_ms = PyLong_AsLongLong(PyTuple_GET_ITEM(t, 4));
    if ((*last_ms == -1 && PyErr_Occurred()) || *k > UINT32_MAX || *s > UINT32_MAX)
        goto range;
    ok = 1;
    goto done;
range:
    PyErr_Clear();
    PyErr_SetString(PyExc_OverflowError, "a stream's key and sender are 32-bit, its instance and highest "
                                         "64-bit unsigned, its last ms 64-bit signed");
done:
    Py_DECREF(t);
    return ok;
}

static PyObject *Receiver_load(Receiver *self, PyObject *entries)
{
    if (!configured(self))
        return NULL;
    PyObject *it = PyObject_GetIter(entries), *item;
    if (it == NULL)
        return NULL;
    while ((item = PyIter_Next(it)) != NULL) {
        unsigned long long k = 0, s = 0, inst = 0, highest = 0;
        long long last_ms = 0;
        int ok = load_entry(item, &k, &s, &inst, &highest, &last_ms);
        Py_DECREF(item);
        if (!ok)
            goto fail;
        if (2 * (self->streams.len + 1) > self->streams.cap && stream_grow(&self->streams) < 0)
            goto fail;
        Stream *st = stream_slot(&self->streams, (uint32_t)k, (uint32_t)s, inst);
        if (st->used && st->highest >= highest)
            continue;
        if (!st->used) {
            uint64_t *bits = PyMem_Malloc(self->words * sizeof(uint64_t));
            if (bits == NULL) {
                PyErr_NoMemory();
                goto fail;
            }
            st->bits = bits;
            st->used = 1;
            st->key_id = (uint32_t)k;
            st->sender = (uint32_t)s;
            st->instance = inst;
            self->streams.len++;
        }
        memset(st->bits, 0xff, self->words * sizeof(uint64_t));  /* the whole window seen */
        st->highest = st->first = highest;
        st->last_ms = last_ms;
    }
    Py_DECREF(it);
    if (PyErr_Occurred())
        return NULL;
    Py_RETURN_NONE;
fail:
    Py_DECREF(it);
    return NULL;
}

static PyObject *Receiver_get_dirty(Receiver *self, void *closure)
{
    (void)closure;
    return PyBool_FromLong(self->dirty);
}

static int Receiver_set_dirty(Receiver *self, PyObject *v, void *closure)
{
    (void)closure;
    if (v == NULL) {
        PyErr_SetString(PyExc_AttributeError, "dirty cannot be deleted");
        return -1;
    }
    int t = PyObject_IsTrue(v);
    if (t < 0)
        return -1;
    self->dirty = t;
    return 0;
}

static PyMethodDef Receiver_methods[] = {
    {"configure", (PyCFunction)Receiver_configure, METH_O, "Take a collector.config.Config's settings and keys."},
    {"receive", (PyCFunction)Receiver_receive, METH_VARARGS,
     "receive(sock, max_datagrams, timeout): wait for the socket, then take what it holds; returns how many."},
    {"handle", (PyCFunction)(void (*)(void))Receiver_handle, METH_VARARGS | METH_KEYWORDS,
     "handle(data, addr, now_ms=None): verify one datagram; returns 'accepted' or the reason."},
    {"take", (PyCFunction)Receiver_take, METH_NOARGS, "The kept records and minute runs, emptied."},
    {"peek", (PyCFunction)Receiver_peek, METH_NOARGS, "The kept records and minute runs, kept."},
    {"counters", (PyCFunction)Receiver_counters, METH_NOARGS, "What was counted since the last reset."},
    {"reset_counters", (PyCFunction)Receiver_reset_counters, METH_NOARGS, "Start counting again."},
    {"streams", (PyCFunction)(void (*)(void))Receiver_streams, METH_VARARGS | METH_KEYWORDS,
     "streams(bits=False): (key, sender, instance, highest, last ms, first[, bits]) per stream."},
    {"prune", (PyCFunction)Receiver_prune, METH_O, "Forget the streams last heard before horizon_ms."},
    {"load", (PyCFunction)Receiver_load, METH_O, "Take saved (key, sender, instance, highest, last ms) streams."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Receiver_getset[] = {
    {"dirty", (getter)Receiver_get_dirty, (setter)Receiver_set_dirty,
     "Whether the replay state changed since it was last saved.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject ReceiverType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "collector._receive.Receiver",
    .tp_basicsize = sizeof(Receiver),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Verifies datagrams and keeps their records until take() (twin: collector.receive.Receiver).",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Receiver_init,
    .tp_dealloc = (destructor)Receiver_dealloc,
    .tp_methods = Receiver_methods,
    .tp_getset = Receiver_getset,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "collector._receive",
    "The collector's receive loop, compiled (twin: collector.receive).", -1, NULL,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__receive(void)
{
    for (int i = 0; i <= N_REASONS; i++)
        if (reason_str[i] == NULL && (reason_str[i] = PyUnicode_InternFromString(REASON_NAMES[i])) == NULL)
            return NULL;
    if (PyType_Ready(&ReceiverType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    Py_INCREF(&ReceiverType);
    if (PyModule_AddObject(m, "Receiver", (PyObject *)&ReceiverType) < 0) {
        Py_DECREF(&ReceiverType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
