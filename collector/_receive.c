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
 *
 * The module also holds the flush's sum, ``aggregate`` (twin:
 * collector.spool.aggregate), at the end of this file.
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

/* ---- The flush's sum: records into spool rows (twin: collector.spool.aggregate)
 *
 * One pass over the records with an open-addressing hash table keyed by
 * (minute, client, server, type) gives each record its group; the sums are
 * kept per group, saturating where spool's do. The rows then come out in
 * spool.aggregate's own order: by the same 64-bit hash of the key (its
 * splitmix64 chain over the seven key words), ties by first appearance, and
 * on a hash collision between two keys by the key itself, as spool falls
 * back to. Nothing downstream depends on the order (merge regroups, the
 * ingest sums), but identical rows make the twin check byte for byte.
 */

/* Offsets in a wire record (ipr_agent.wire.RECORD, big-endian). */
enum {
    REC_SIZE = 120, REC_STATUS = 50, REC_FLAGS = 52, REC_REQUESTS = 56, REC_DURATION = 60,
    REC_RESPONSE = 64, REC_WIRE = 72, REC_RETRANS = 80, REC_DATA_SEGS = 88,
    REC_RETRANS_SEGS = 92, REC_RTT = 96, REC_MIN_RTT = 104, REC_RATE = 112,
};
enum { F_TCPINFO = 0x1, F_TCPINFO_SEGS = 0x2, F_BYTES_SENT = 0x4, F_DELIVERY_RATE = 0x8,
       F_NEW_CONNECTION = 0x20 };

/* Offsets in a spool row (collector.spool.ROW, little-endian), checked
 * against ROW when the first call imports it. */
#define ROW_SIZE 224
static const struct { const char *name; Py_ssize_t offset; } ROW_FIELDS[] = {
    {"minute", 0}, {"client", 4}, {"server", 20}, {"traffic_type", 36}, {"records", 52},
    {"connections", 56}, {"requests", 60}, {"status", 68}, {"response_bytes", 92},
    {"wire_bytes", 100}, {"retrans_bytes", 108}, {"data_segs", 116}, {"retrans_segs", 124},
    {"tcpinfo_records", 132}, {"segs_records", 136}, {"bytes_records", 140},
    {"rate_records", 144}, {"rtt_sum_us", 148}, {"rtt_hist", 156}, {"min_rtt_us", 204},
    {"rate_sum", 208}, {"duration_sum_us", 216},
};
#define N_ROW_FIELDS (sizeof ROW_FIELDS / sizeof ROW_FIELDS[0])

static const uint32_t RTT_EDGES[] = {1000, 2000, 5000, 10000, 20000, 50000, 100000,
                                     200000, 500000, 1000000, 2000000};
#define RTT_BUCKETS (sizeof RTT_EDGES / sizeof RTT_EDGES[0] + 1)

/* A group's key, one cache line: what the hash table compares. */
typedef struct {
    uint64_t key[7];      /* minute, then the 48 key bytes as native u64 words */
    uint64_t hash;
} GroupKey;

typedef struct {
    uint64_t hash;
    uint32_t group;       /* in the table, index + 1 (0: an empty slot); in the rows' order, index */
} Slot;

/* A group's sums. Those of 64-bit values saturate as they go; sums of
 * 32-bit values into 64-bit fields cannot pass 2**64 (fewer than 2**32
 * records), and the u32 fields saturate at 2**32 - 1 as spool's do. */
typedef struct {
    uint64_t requests, response_bytes, wire_bytes, retrans_bytes, data_segs, retrans_segs,
             rtt_sum_us, rate_sum, duration_sum_us;
    uint32_t records, connections, status[6], tcpinfo_records, segs_records, bytes_records,
             rate_records, rtt_hist[RTT_BUCKETS], min_rtt_us;
    uint32_t first;       /* index of the group's first record */
    uint32_t minute;
} Group;

static inline uint64_t mix64(uint64_t a)
{
    a = (a ^ (a >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    a = (a ^ (a >> 27)) * UINT64_C(0x94D049BB133111EB);
    return a ^ (a >> 31);
}

static inline uint64_t be_u64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | p[i];
    return v;
}

static inline uint32_t be_u32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static inline uint64_t sat_add(uint64_t a, uint64_t b)
{
    uint64_t s;
    return __builtin_add_overflow(a, b, &s) ? UINT64_MAX : s;
}

static inline uint32_t sat_add32(uint32_t a, uint32_t b)
{
    uint32_t s;
    return __builtin_add_overflow(a, b, &s) ? UINT32_MAX : s;
}

static inline void put_le32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static inline void put_le64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static void add_record(Group *g, const unsigned char *r)
{
    unsigned flags = (unsigned)r[REC_FLAGS] << 8 | r[REC_FLAGS + 1];
    unsigned status = (unsigned)r[REC_STATUS] << 8 | r[REC_STATUS + 1];
    uint32_t requests = be_u32(r + REC_REQUESTS);
    unsigned cls = status / 100 - 1;  /* 1xx..5xx are classes 0..4; below 100 and 600+ are "other" */
    g->records = sat_add32(g->records, 1);
    g->connections = sat_add32(g->connections, (flags & F_NEW_CONNECTION) != 0);
    g->requests += requests;
    if (cls > 4)  /* status 0..99 wrapped around to UINT_MAX */
        cls = 5;
    g->status[cls] = sat_add32(g->status[cls], requests);
    g->response_bytes = sat_add(g->response_bytes, be_u64(r + REC_RESPONSE));
    g->duration_sum_us += be_u32(r + REC_DURATION);
    if (flags & F_BYTES_SENT) {
        g->bytes_records = sat_add32(g->bytes_records, 1);
        g->wire_bytes = sat_add(g->wire_bytes, be_u64(r + REC_WIRE));
        g->retrans_bytes = sat_add(g->retrans_bytes, be_u64(r + REC_RETRANS));
    }
    if (flags & F_TCPINFO_SEGS) {
        uint32_t min_rtt = be_u32(r + REC_MIN_RTT);
        g->segs_records = sat_add32(g->segs_records, 1);
        g->data_segs += be_u32(r + REC_DATA_SEGS);
        if (min_rtt < g->min_rtt_us)
            g->min_rtt_us = min_rtt;
    }
    if (flags & F_TCPINFO) {
        uint32_t rtt = be_u32(r + REC_RTT);
        size_t bucket = 0;
        while (bucket < RTT_BUCKETS - 1 && RTT_EDGES[bucket] <= rtt)
            bucket++;
        g->tcpinfo_records = sat_add32(g->tcpinfo_records, 1);
        g->retrans_segs += be_u32(r + REC_RETRANS_SEGS);
        g->rtt_sum_us += rtt;
        g->rtt_hist[bucket] = sat_add32(g->rtt_hist[bucket], 1);
    }
    if (flags & F_DELIVERY_RATE) {
        g->rate_records = sat_add32(g->rate_records, 1);
        g->rate_sum = sat_add(g->rate_sum, be_u64(r + REC_RATE));
    }
}

/* The keys the two orders below compare (qsort passes no context). */
static const GroupKey *sort_keys;

static int cmp_hash_first(const void *pa, const void *pb)
{
    const Slot *a = pa, *b = pb;
    if (a->hash != b->hash)
        return a->hash < b->hash ? -1 : 1;
    return (a->group > b->group) - (a->group < b->group);  /* numbered in order of first appearance */
}

static int cmp_group_key(const void *pa, const void *pb)
{
    const GroupKey *a = &sort_keys[((const Slot *)pa)->group], *b = &sort_keys[((const Slot *)pb)->group];
    for (int i = 0; i < 7; i++)
        if (a->key[i] != b->key[i])
            return a->key[i] < b->key[i] ? -1 : 1;
    return 0;
}

static PyObject *numpy_zeros, *spool_row;

/* numpy.zeros and collector.spool.ROW, once; ROW must be the layout above. */
static int load_row_type(void)
{
    if (spool_row != NULL)
        return 0;
    PyObject *np = PyImport_ImportModule("numpy");
    PyObject *sp = np ? PyImport_ImportModule("collector.spool") : NULL;
    PyObject *zeros = np && sp ? PyObject_GetAttrString(np, "zeros") : NULL;
    PyObject *row = zeros ? PyObject_GetAttrString(sp, "ROW") : NULL;
    Py_XDECREF(np);
    Py_XDECREF(sp);
    if (row == NULL) {
        Py_XDECREF(zeros);
        return -1;
    }
    PyObject *size = PyObject_GetAttrString(row, "itemsize");
    PyObject *fields = size ? PyObject_GetAttrString(row, "fields") : NULL;
    int ok = size && fields && PyLong_AsSsize_t(size) == ROW_SIZE && PyMapping_Size(fields) == (Py_ssize_t)N_ROW_FIELDS;
    for (size_t i = 0; ok && i < N_ROW_FIELDS; i++) {
        PyObject *f = PyMapping_GetItemString(fields, ROW_FIELDS[i].name);
        ok = f && PyTuple_Check(f) && PyTuple_GET_SIZE(f) >= 2 &&
             PyLong_AsSsize_t(PyTuple_GET_ITEM(f, 1)) == ROW_FIELDS[i].offset;
        Py_XDECREF(f);
    }
    Py_XDECREF(size);
    Py_XDECREF(fields);
    if (!ok) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_RuntimeError,
                            "collector._receive was built for another collector.spool.ROW layout: rebuild it");
        Py_DECREF(zeros);
        Py_DECREF(row);
        return -1;
    }
    numpy_zeros = zeros;
    spool_row = row;
    return 0;
}

static void write_row(unsigned char *out, const Group *g, const unsigned char *records)
{
    put_le32(out + 0, g->minute);
    memcpy(out + 4, records + (size_t)g->first * REC_SIZE, 48);  /* client, server, type */
    put_le32(out + 52, g->records);
    put_le32(out + 56, g->connections);
    put_le64(out + 60, g->requests);
    for (int i = 0; i < 6; i++)
        put_le32(out + 68 + 4 * i, g->status[i]);
    put_le64(out + 92, g->response_bytes);
    put_le64(out + 100, g->wire_bytes);
    put_le64(out + 108, g->retrans_bytes);
    put_le64(out + 116, g->data_segs);
    put_le64(out + 124, g->retrans_segs);
    put_le32(out + 132, g->tcpinfo_records);
    put_le32(out + 136, g->segs_records);
    put_le32(out + 140, g->bytes_records);
    put_le32(out + 144, g->rate_records);
    put_le64(out + 148, g->rtt_sum_us);
    for (size_t i = 0; i < RTT_BUCKETS; i++)
        put_le32(out + 156 + 4 * i, g->rtt_hist[i]);
    put_le32(out + 204, g->min_rtt_us);
    put_le64(out + 208, g->rate_sum);
    put_le64(out + 216, g->duration_sum_us);
}

static inline uint64_t key_of(const unsigned char *records, const uint32_t *minutes, size_t i, uint64_t key[7])
{
    uint64_t h = 0;
    key[0] = minutes[i];
    memcpy(key + 1, records + i * REC_SIZE, 48);  /* the same words as spool's view of the bytes as uint64 */
    for (int k = 0; k < 7; k++)
        h = mix64(h ^ key[k]);
    return h;
}

#define LOOKAHEAD 16  /* records ahead whose table slot is fetched into the cache */

/* Gives each of the n records its group (gid[i], numbered in order of first
 * appearance); the groups' keys go to *keys_out (malloc'd, *count_out of
 * them). Returns -1 on memory exhaustion (no Python error set). */
static int group_records(const unsigned char *records, const uint32_t *minutes, size_t n,
                         uint32_t *gid, GroupKey **keys_out, size_t *count_out)
{
    size_t cap = 1024, count = 0, slots = 2048;  /* slots: a power of two, at least twice cap */
    GroupKey *keys = malloc(cap * sizeof *keys);
    Slot *table = calloc(slots, sizeof *table);
    uint64_t ahead[LOOKAHEAD], key[7];
    if (keys == NULL || table == NULL)
        goto fail;
    for (size_t i = 0; i < n && i < LOOKAHEAD; i++)
        ahead[i] = key_of(records, minutes, i, key);
    for (size_t i = 0; i < n; i++) {
        uint64_t h = ahead[i % LOOKAHEAD];
        if (i + LOOKAHEAD < n) {
            uint64_t next = key_of(records, minutes, i + LOOKAHEAD, key);
            ahead[i % LOOKAHEAD] = next;
            __builtin_prefetch(&table[(size_t)next & (slots - 1)]);
        }
        key[0] = minutes[i];
        memcpy(key + 1, records + i * REC_SIZE, 48);
        size_t slot = (size_t)h & (slots - 1);
        uint32_t g = 0;
        while (table[slot].group != 0) {
            if (table[slot].hash == h && memcmp(keys[table[slot].group - 1].key, key, sizeof key) == 0) {
                g = table[slot].group;
                break;
            }
            slot = (slot + 1) & (slots - 1);
        }
        if (g == 0) {
            if (count == cap) {
                if (cap > SIZE_MAX / 4 / sizeof *keys || 2 * cap > UINT32_MAX - 1)
                    goto fail;
                GroupKey *bigger = realloc(keys, 2 * cap * sizeof *keys);
                if (bigger == NULL)
                    goto fail;
                keys = bigger;
                cap *= 2;
                Slot *wider = calloc(2 * slots, sizeof *wider);
                if (wider == NULL)
                    goto fail;
                free(table);
                table = wider;
                slots *= 2;
                for (size_t j = 0; j < count; j++) {
                    size_t s = (size_t)keys[j].hash & (slots - 1);
                    while (table[s].group != 0)
                        s = (s + 1) & (slots - 1);
                    table[s].hash = keys[j].hash;
                    table[s].group = (uint32_t)(j + 1);
                }
                slot = (size_t)h & (slots - 1);
                while (table[slot].group != 0)
                    slot = (slot + 1) & (slots - 1);
            }
            memcpy(keys[count].key, key, sizeof key);
            keys[count].hash = h;
            g = (uint32_t)(++count);
            table[slot].hash = h;
            table[slot].group = g;
        }
        gid[i] = g - 1;
    }
    free(table);
    *keys_out = keys;
    *count_out = count;
    return 0;
fail:
    free(keys);
    free(table);
    return -1;
}

static PyObject *aggregate(PyObject *module, PyObject *args)
{
    PyObject *records_obj, *minutes_obj, *rows = NULL;
    Py_buffer rec = {0}, min = {0}, out = {0};
    GroupKey *keys = NULL;
    Group *groups = NULL;
    uint32_t *gid = NULL;
    Slot *order = NULL;  /* the rows' order: (hash, group) */
    size_t count = 0;
    if (!PyArg_ParseTuple(args, "OO:aggregate", &records_obj, &minutes_obj))
        return NULL;
    if (load_row_type() < 0)
        return NULL;
    if (PyObject_GetBuffer(records_obj, &rec, PyBUF_C_CONTIGUOUS) < 0)
        return NULL;
    /* The same errors, in the same order, as spool.aggregate's numpy calls. */
    if (rec.len % REC_SIZE != 0) {
        PyErr_SetString(PyExc_ValueError, "buffer size must be a multiple of element size");
        goto done;
    }
    size_t n = (size_t)rec.len / REC_SIZE;
    if (n == 0) {
        rows = PyObject_CallFunction(numpy_zeros, "nO", (Py_ssize_t)0, spool_row);
        goto done;
    }
    if (PyObject_GetBuffer(minutes_obj, &min, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0)
        goto done;
    const char *fmt = min.format ? min.format : "B";
    if (min.itemsize != 4 || (strcmp(fmt, "I") != 0 && strcmp(fmt, "=I") != 0 && strcmp(fmt, "@I") != 0 &&
                              (PY_LITTLE_ENDIAN == 0 || strcmp(fmt, "<I") != 0))) {
        PyErr_Format(PyExc_TypeError, "minutes must be a uint32 array, not format %s", fmt);
        goto done;
    }
    size_t m = (size_t)min.len / 4;
    if (m != n || min.ndim != 1) {
        PyErr_Format(PyExc_ValueError, "could not broadcast input array from shape (%zu,) into shape (%zu,)", m, n);
        goto done;
    }
    if (n > UINT32_MAX || (gid = malloc(n * sizeof *gid)) == NULL ||
        group_records(rec.buf, min.buf, n, gid, &keys, &count) < 0 ||
        (groups = calloc(count, sizeof *groups)) == NULL || (order = malloc(count * sizeof *order)) == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        Group *g = &groups[gid[i]];
        if (i + 8 < n) {  /* the sums 8 records ahead, into the cache */
            const char *next = (const char *)&groups[gid[i + 8]];
            __builtin_prefetch(next);
            __builtin_prefetch(next + 64);
            __builtin_prefetch(next + 128);
        }
        if (g->records == 0) {
            g->first = (uint32_t)i;
            g->minute = ((const uint32_t *)min.buf)[i];
            g->min_rtt_us = UINT32_MAX;  /* spool.NO_MIN_RTT */
        }
        add_record(g, (const unsigned char *)rec.buf + i * REC_SIZE);
    }
    for (size_t i = 0; i < count; i++) {
        order[i].hash = keys[i].hash;
        order[i].group = (uint32_t)i;
    }
    qsort(order, count, sizeof *order, cmp_hash_first);
    for (size_t i = 1; i < count; i++)
        if (order[i].hash == order[i - 1].hash) {  /* a collision: spool sorts on the key */
            sort_keys = keys;  /* the GIL is held: no other call uses it meanwhile */
            qsort(order, count, sizeof *order, cmp_group_key);
            sort_keys = NULL;
            break;
        }
    rows = PyObject_CallFunction(numpy_zeros, "nO", (Py_ssize_t)count, spool_row);
    if (rows == NULL)
        goto done;
    if (PyObject_GetBuffer(rows, &out, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS) < 0 ||
        out.len != (Py_ssize_t)(count * ROW_SIZE)) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_RuntimeError, "spool rows are not the expected size");
        Py_CLEAR(rows);
        goto done;
    }
    for (size_t i = 0; i < count; i++) {
        if (i + 16 < count) {  /* groups in hash order are scattered: fetch ahead */
            const char *next = (const char *)&groups[order[i + 16].group];
            __builtin_prefetch(next);
            __builtin_prefetch(next + 64);
            __builtin_prefetch(next + 128);
        }
        if (i + 8 < count)
            __builtin_prefetch((const unsigned char *)rec.buf + (size_t)groups[order[i + 8].group].first * REC_SIZE);
        write_row((unsigned char *)out.buf + i * ROW_SIZE, &groups[order[i].group], rec.buf);
    }
done:
    if (out.obj)
        PyBuffer_Release(&out);
    if (min.obj)
        PyBuffer_Release(&min);
    PyBuffer_Release(&rec);
    free(order);
    free(groups);
    free(keys);
    free(gid);
    return rows;
}

static PyMethodDef module_methods[] = {
    {"aggregate", aggregate, METH_VARARGS,
     "aggregate(records, minutes): spool rows, one per minute x server x client x type "
     "(twin: collector.spool.aggregate)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "collector._receive",
    "The collector's receive loop and the flush's sum, compiled (twins: collector.receive,\n"
    "collector.spool.aggregate).", -1, module_methods,
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
