/* MRT table dumps to route batches: the compiled twin of
 * ipr.routing.dumps.mrt.parse + batches.from_routes (see docs/routing-mrt.md,
 * "Speed").
 *
 * Parser(read, source, stats, accept_truncated, size, DumpError, Attrs, warn,
 * chunk) is an iterator of (v6, addr, plen, attr, best, new_attrs, first_attr)
 * tuples, the columns of one Batch as bytes; mrt.batches() wraps them in numpy
 * arrays. It reads the stream exactly as the Python parser does (the same
 * read sizes), checks the same things in the same order and raises the same
 * DumpError (source, "byte N", message) for every fault.
 *
 * Attribute sets are numbered by value: each decoded set becomes a compact
 * canonical key (next hop, local pref, MED, communities, the AS path as
 * segments, adjacent sequences merged) kept in an arena and found through an
 * open-addressing table; equal keys are equal Attrs and nothing else is.
 * Python Attrs objects are made once per set, handed out in the batch where
 * the set first appears and not kept here (their next hop, path and
 * communities texts are shared through small bounded memos). A bounded cache
 * from raw blob to set number skips the decoding of blobs seen recently.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define TABLE_DUMP 12
#define TABLE_DUMP_V2 13
#define PEER_INDEX_TABLE 1
#define F_V6 1
#define F_ADDPATH 2
#define F_GENERIC 4

#define EMIT 1 /* record() result: hand out the batch before this record */

#define CACHE_BITS 16 /* blob cache entries: 65536 */
#define ARENA_BLOCK (1 << 20)

static inline uint16_t u16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static inline uint32_t u32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint64_t hash_bytes(const uint8_t *p, size_t n, uint64_t seed)
{
    uint64_t h = seed ^ (n * 0x9E3779B97F4A7C15ULL);
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        h = (h ^ w) * 0xFF51AFD7ED558CCDULL;
        h ^= h >> 29;
        p += 8;
        n -= 8;
    }
    uint64_t w = 0;
    for (size_t i = 0; i < n; i++)
        w |= (uint64_t)p[i] << (8 * i);
    h = (h ^ w) * 0xC4CEB9FE1A85EC53ULL;
    h ^= h >> 32;
    return h;
}

/* -- growable byte buffer ------------------------------------------------- */

typedef struct {
    uint8_t *p;
    size_t n, cap;
} Bytes;

static int bytes_reserve(Bytes *b, size_t more)
{
    if (b->n + more <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->n + more)
        cap *= 2;
    uint8_t *p = realloc(b->p, cap);
    if (!p) {
        PyErr_NoMemory();
        return -1;
    }
    b->p = p;
    b->cap = cap;
    return 0;
}

static int bytes_add(Bytes *b, const void *data, size_t n)
{
    if (bytes_reserve(b, n) < 0)
        return -1;
    memcpy(b->p + b->n, data, n);
    b->n += n;
    return 0;
}

static int bytes_u32(Bytes *b, uint32_t v) { return bytes_add(b, &v, 4); }

/* -- attribute sets: canonical keys in an arena, an open-addressing table -- */

typedef struct {
    const uint8_t *key;
    uint32_t len, hash;
} Set;

/* What the best path is chosen by (see set_rank). */
typedef struct {
    uint32_t lp, pathlen, med;
} Rank;

typedef struct {
    Set *sets;
    uint32_t n, cap;
    uint32_t *slots; /* set number + 1, 0 = empty */
    uint32_t mask;
    uint8_t **blocks; /* the arena */
    size_t nblocks, used; /* used: bytes of the last block */
} SetTable;

static const uint8_t *arena_copy(SetTable *t, const uint8_t *key, size_t len)
{
    if (!t->nblocks || t->used + len > ARENA_BLOCK) {
        size_t size = len > ARENA_BLOCK ? len : ARENA_BLOCK;
        uint8_t **blocks = realloc(t->blocks, (t->nblocks + 1) * sizeof *blocks);
        if (!blocks)
            return NULL;
        t->blocks = blocks;
        if (!(blocks[t->nblocks] = malloc(size)))
            return NULL;
        t->nblocks++;
        t->used = 0;
    }
    uint8_t *at = t->blocks[t->nblocks - 1] + t->used;
    memcpy(at, key, len);
    t->used += len > ARENA_BLOCK ? ARENA_BLOCK : len;
    return at;
}

static int table_grow(SetTable *t)
{
    uint32_t size = t->mask ? (t->mask + 1) * 2 : 1024;
    uint32_t *slots = calloc(size, sizeof *slots);
    if (!slots) {
        PyErr_NoMemory();
        return -1;
    }
    for (uint32_t i = 0; i < t->n; i++) {
        uint32_t j = t->sets[i].hash & (size - 1);
        while (slots[j])
            j = (j + 1) & (size - 1);
        slots[j] = i + 1;
    }
    free(t->slots);
    t->slots = slots;
    t->mask = size - 1;
    return 0;
}

/* The number of the set with this key: *is_new tells whether it was added. */
static int64_t table_find(SetTable *t, const uint8_t *key, size_t len, int *is_new)
{
    if ((uint64_t)(t->n + 1) * 2 > (uint64_t)t->mask + 1 && table_grow(t) < 0)
        return -1;
    uint32_t h = (uint32_t)hash_bytes(key, len, 0x5EED);
    uint32_t j = h & t->mask;
    for (;;) {
        uint32_t s = t->slots[j];
        if (!s)
            break;
        Set *set = &t->sets[s - 1];
        if (set->hash == h && set->len == len && memcmp(set->key, key, len) == 0) {
            *is_new = 0;
            return s - 1;
        }
        j = (j + 1) & t->mask;
    }
    if (t->n == UINT32_MAX - 1) {
        PyErr_SetString(PyExc_OverflowError, "too many distinct attribute sets");
        return -1;
    }
    if (t->n == t->cap) {
        uint32_t cap = t->cap ? t->cap * 2 : 1024;
        Set *sets = realloc(t->sets, (size_t)cap * sizeof *sets);
        if (!sets) {
            PyErr_NoMemory();
            return -1;
        }
        t->sets = sets;
        t->cap = cap;
    }
    const uint8_t *copy = arena_copy(t, key, len);
    if (!copy) {
        PyErr_NoMemory();
        return -1;
    }
    Set *set = &t->sets[t->n];
    set->key = copy;
    set->len = (uint32_t)len;
    set->hash = h;
    t->slots[j] = t->n + 1;
    *is_new = 1;
    return t->n++;
}

static void table_free(SetTable *t)
{
    for (size_t i = 0; i < t->nblocks; i++)
        free(t->blocks[i]);
    free(t->blocks);
    free(t->sets);
    free(t->slots);
    memset(t, 0, sizeof *t);
}

/* -- a bounded cache: raw attribute blob -> set number --------------------- */

typedef struct {
    uint64_t hash;
    uint8_t *blob; /* malloc'd copy, NULL = empty */
    uint32_t len, cap, set;
    int kind; /* as4 << 1 | v6: the decoding depends on both */
} CacheEntry;

/* -- segments of an AS path ------------------------------------------------ */

typedef struct {
    uint32_t n, cap;
    uint8_t *kind; /* 1 set, 2 seq, 3 confed seq, 4 confed set */
    uint32_t *count, *first; /* first: index into asns */
    uint32_t *asns;
    uint32_t nasns, capasns;
} Segments;

static int segs_add(Segments *s, uint8_t kind, uint32_t count)
{
    if (s->n == s->cap) {
        uint32_t cap = s->cap ? s->cap * 2 : 16;
        uint8_t *k = realloc(s->kind, cap);
        if (!k)
            return -1;
        s->kind = k;
        uint32_t *c = realloc(s->count, cap * sizeof *c);
        if (!c)
            return -1;
        s->count = c;
        uint32_t *f = realloc(s->first, cap * sizeof *f);
        if (!f)
            return -1;
        s->first = f;
        s->cap = cap;
    }
    if (s->nasns + count > s->capasns) {
        uint32_t cap = s->capasns ? s->capasns : 64;
        while (cap < s->nasns + count)
            cap *= 2;
        uint32_t *a = realloc(s->asns, cap * sizeof *a);
        if (!a)
            return -1;
        s->asns = a;
        s->capasns = cap;
    }
    s->kind[s->n] = kind;
    s->count[s->n] = count;
    s->first[s->n] = s->nasns;
    s->n++;
    return 0;
}

static void segs_free(Segments *s)
{
    free(s->kind);
    free(s->count);
    free(s->first);
    free(s->asns);
}

/* A memo entry (see memo_slot). */
typedef struct {
    uint64_t hash;
    uint8_t *data;
    uint32_t len, cap;
    PyObject *value;
} MemoEntry;

#define MEMO_BITS 12

/* -- the parser ------------------------------------------------------------ */

typedef struct {
    PyObject_HEAD
    PyObject *read, *source, *stats, *dump_error, *attrs_type, *warn;
    int accept_truncated;
    Py_ssize_t size;
    size_t chunk;
    /* the data: buf[pos:len] not read yet; base = file offset of buf[0] */
    uint8_t *buf;
    size_t len, cap, pos, need;
    uint64_t base;
    int eof, cut, ended, failed;
    /* the current PEER_INDEX_TABLE */
    int have_peers;
    uint32_t npeers;
    /* counters for Stats */
    uint64_t records, routes, peer_tables;
    int64_t last_peer_table_at, truncated_at;
    PyObject *peer_tables0; /* stats.peer_tables at the start */
    /* the group: the last RIB record's prefix and its routes in the batch */
    uint8_t gp[18];
    int have_gp;
    Py_ssize_t gbest; /* index of its best route in the batch, -1: none yet */
    Rank grank;       /* that route's rank, if have_grank */
    int have_grank;
    uint8_t last[18]; /* the last route's prefix (family, plen, address) */
    int have_last;
    /* the batch being filled */
    int bv6;
    Bytes addr, plen, attr, best;
    Py_ssize_t n;
    PyObject *new_attrs;
    uint32_t first_attr;
    /* attribute sets */
    SetTable sets;
    CacheEntry *cache;
    MemoEntry *hops, *paths, *comms;
    Bytes key, text;
    Segments path, path4;
} Parser;

static PyTypeObject ParserType;

/* A DumpError at a byte offset, message printf-style (PyUnicode_FromFormat). */
static int fail(Parser *s, uint64_t at, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    PyObject *message = PyUnicode_FromFormatV(fmt, ap);
    va_end(ap);
    if (!message)
        return -1;
    PyObject *where = PyUnicode_FromFormat("byte %llu", (unsigned long long)at);
    if (where) {
        PyObject *err = PyObject_CallFunctionObjArgs(s->dump_error, s->source, where, message, NULL);
        if (err) {
            PyErr_SetObject((PyObject *)Py_TYPE(err), err);
            Py_DECREF(err);
        }
        Py_DECREF(where);
    }
    Py_DECREF(message);
    return -1;
}

/* bytes.hex() of data, as a new str. */
static PyObject *hex(const uint8_t *data, size_t n)
{
    static const char digits[] = "0123456789abcdef";
    PyObject *out = PyUnicode_New((Py_ssize_t)(2 * n), 127);
    if (!out)
        return NULL;
    Py_UCS1 *p = PyUnicode_1BYTE_DATA(out);
    for (size_t i = 0; i < n; i++) {
        p[2 * i] = (Py_UCS1)digits[data[i] >> 4];
        p[2 * i + 1] = (Py_UCS1)digits[data[i] & 15];
    }
    return out;
}

/* The AS path segments of an attribute value (mrt._segments). */
static int read_segments(Parser *s, Segments *out, const uint8_t *v, size_t end, int asn_size, uint64_t where)
{
    out->n = out->nasns = 0;
    size_t p = 0;
    while (p < end) {
        if (p + 2 > end)
            return fail(s, where, "AS path segment header runs past the attribute");
        uint8_t kind = v[p], count = v[p + 1];
        if (kind < 1 || kind > 4)
            return fail(s, where, "unknown AS path segment type %d", kind);
        size_t q = p + 2 + (size_t)count * asn_size;
        if (q > end)
            return fail(s, where, "AS path segment of %d ASNs runs past the attribute (%d-byte ASNs)",
                        count, asn_size);
        if (segs_add(out, kind, count) < 0) {
            PyErr_NoMemory();
            return -1;
        }
        for (uint32_t i = 0; i < count; i++)
            out->asns[out->nasns++] = asn_size == 4 ? u32(v + p + 2 + 4 * i) : u16(v + p + 2 + 2 * i);
        p = q;
    }
    return 0;
}

/* Path key writer: segments in path order, confederations and empty ones left
 * out, adjacent sequences merged (their text is the same): u8 kind, u32 count,
 * count u32 ASNs. last_seq: offset of the open sequence's count, or 0. */
typedef struct {
    Bytes *key;
    size_t last_seq;
} PathOut;

static int path_emit(PathOut *o, uint8_t kind, const uint32_t *asns, uint32_t count)
{
    if (kind > 2 || !count)
        return 0;
    if (kind == 2 && o->last_seq) {
        uint32_t had;
        memcpy(&had, o->key->p + o->last_seq, 4);
        had += count;
        memcpy(o->key->p + o->last_seq, &had, 4);
    } else {
        if (bytes_add(o->key, &kind, 1) < 0)
            return -1;
        o->last_seq = kind == 2 ? o->key->n : 0;
        if (bytes_u32(o->key, count) < 0)
            return -1;
    }
    return bytes_add(o->key, asns, (size_t)count * 4);
}

/* RFC 6793 4.2.3 count: a set counts as one, confederation segments as none. */
static int64_t path_count(const Segments *s)
{
    int64_t n = 0;
    for (uint32_t i = 0; i < s->n; i++)
        n += s->kind[i] == 2 ? s->count[i] : s->kind[i] == 1 ? 1 : 0;
    return n;
}

static int path_key(Parser *s, int merge, PathOut *o)
{
    Segments *a = &s->path, *b = &s->path4;
    if (!merge) {
        for (uint32_t i = 0; i < a->n; i++)
            if (path_emit(o, a->kind[i], a->asns + a->first[i], a->count[i]) < 0)
                return -1;
        return 0;
    }
    int64_t keep = path_count(a) - path_count(b);
    if (keep < 0)
        return path_key(s, 0, o); /* an AS4_PATH longer than the AS_PATH is ignored */
    for (uint32_t i = 0; i < a->n; i++) {
        if (keep <= 0)
            break;
        uint32_t count = a->count[i];
        if (a->kind[i] == 2) {
            if ((int64_t)count > keep)
                count = (uint32_t)keep;
            keep -= count;
        } else if (a->kind[i] == 1) {
            keep -= 1;
        }
        if (path_emit(o, a->kind[i], a->asns + a->first[i], count) < 0)
            return -1;
    }
    for (uint32_t i = 0; i < b->n; i++)
        if (path_emit(o, b->kind[i], b->asns + b->first[i], b->count[i]) < 0)
            return -1;
    return 0;
}

/* The next hop of MP_REACH_NLRI (mrt._mp_next_hop): *family 0 (none), 4 or 6. */
static int mp_next_hop(Parser *s, const uint8_t *v, size_t size, uint64_t where, int *family, uint8_t *out)
{
    const uint8_t *hop;
    size_t n;
    if (size && (size_t)v[0] + 1 == size) {
        hop = v + 1;
        n = size - 1;
    } else if (size >= 4 && v[0] == 0 && (v[1] == 1 || v[1] == 2)) {
        hop = v + 4;
        n = v[3];
        if (4 + n > size)
            return fail(s, where, "MP_REACH_NLRI next hop runs past the attribute");
    } else {
        PyObject *h = hex(v, size < 8 ? size : 8);
        if (!h)
            return -1;
        fail(s, where, "cannot read MP_REACH_NLRI of %zu bytes (%U...)", size, h);
        Py_DECREF(h);
        return -1;
    }
    static const uint8_t zero[16];
    *family = 0;
    if (n == 16 || n == 32) {
        if (n == 32 && memcmp(hop, zero, 16) == 0)
            hop += 16;
        if (memcmp(hop, zero, 16) != 0) {
            *family = 6;
            memcpy(out, hop, 16);
        }
        return 0;
    }
    if (n == 4) {
        if (memcmp(hop, zero, 4) != 0) {
            *family = 4;
            memcpy(out, hop, 4);
        }
        return 0;
    }
    if (n == 0)
        return 0;
    return fail(s, where, "MP_REACH_NLRI next hop of %zu bytes", n);
}

/* Key layout: u8 hop family (0, 4, 6) | has lp << 4 | has med << 5; the hop
 * (4 or 16 bytes); lp u32; med u32; u32 standard count, words (a << 16 | b);
 * u32 large count, 3 words each; then the path (path_emit). Host order. */

/* Decode an attribute blob into s->key (mrt._AttrParser.__call__). */
static int decode(Parser *s, const uint8_t *blob, size_t end, int as4, int v6, uint64_t at)
{
    int nh = 0, mp = 0, has_lp = 0, has_med = 0;
    uint8_t nh_addr[16], mp_addr[16];
    uint32_t lp = 0, med = 0;
    const uint8_t *path = NULL, *path4 = NULL, *comm = NULL, *large = NULL;
    size_t path_size = 0, path4_size = 0, comm_size = 0, large_size = 0;
    uint64_t path_at = 0, path4_at = 0;
    size_t p = 0;
    while (p < end) {
        if (p + 3 > end)
            return fail(s, at + p, "path attribute header runs past the attributes");
        uint8_t flags = blob[p], code = blob[p + 1];
        size_t v, size;
        if (flags & 0x10) {
            if (p + 4 > end)
                return fail(s, at + p, "path attribute header runs past the attributes");
            v = p + 4;
            size = u16(blob + p + 2);
        } else {
            v = p + 3;
            size = blob[p + 2];
        }
        size_t e = v + size;
        if (e > end)
            return fail(s, at + p, "path attribute %d of %zu bytes runs %zu bytes past the attributes",
                        code, size, e - end);
        const uint8_t *val = blob + v;
        switch (code) {
        case 2:
            path = val, path_size = size, path_at = at + p;
            break;
        case 1:
            if (size != 1 || val[0] > 2) {
                PyObject *h = hex(val, size);
                if (!h)
                    return -1;
                fail(s, at + p, "bad ORIGIN attribute %U", h);
                Py_DECREF(h);
                return -1;
            }
            break;
        case 3:
            if (size != 4)
                return fail(s, at + p, "NEXT_HOP of %zu bytes, not 4", size);
            nh = u32(val) ? 4 : 0;
            memcpy(nh_addr, val, 4);
            break;
        case 8:
            if (size % 4)
                return fail(s, at + p, "COMMUNITIES of %zu bytes, not a multiple of 4", size);
            comm = val, comm_size = size;
            break;
        case 14:
            if (mp_next_hop(s, val, size, at + p, &mp, mp_addr) < 0)
                return -1;
            break;
        case 32:
            if (size % 12)
                return fail(s, at + p, "LARGE_COMMUNITIES of %zu bytes, not a multiple of 12", size);
            large = val, large_size = size;
            break;
        case 4:
        case 5:
            if (size != 4)
                return fail(s, at + p, "%s of %zu bytes, not 4", code == 5 ? "LOCAL_PREF" : "MULTI_EXIT_DISC",
                            size);
            if (code == 5)
                has_lp = 1, lp = u32(val);
            else
                has_med = 1, med = u32(val);
            break;
        case 17:
            if (!as4)
                path4 = val, path4_size = size, path4_at = at + p;
            break;
        default:
            break;
        }
        p = e;
    }
    int merge = 0;
    s->path.n = s->path.nasns = 0;
    if (path) {
        if (read_segments(s, &s->path, path, path_size, as4 ? 4 : 2, path_at) < 0)
            return -1;
        if (path4) {
            if (read_segments(s, &s->path4, path4, path4_size, 4, path4_at) < 0)
                return -1;
            merge = 1;
        }
    }
    /* An IPv6 route's next hop is MP_REACH_NLRI's, else NEXT_HOP's; IPv4 the other way. */
    int use_mp = v6 ? mp != 0 : nh == 0;
    int family = use_mp ? mp : nh;
    const uint8_t *hop = use_mp ? mp_addr : nh_addr;
    Bytes *k = &s->key;
    k->n = 0;
    uint8_t head = (uint8_t)(family | has_lp << 4 | has_med << 5);
    if (bytes_add(k, &head, 1) < 0 || (family && bytes_add(k, hop, family == 4 ? 4 : 16) < 0)
        || (has_lp && bytes_u32(k, lp) < 0) || (has_med && bytes_u32(k, med) < 0))
        return -1;
    if (bytes_u32(k, (uint32_t)(comm_size / 4)) < 0)
        return -1;
    for (size_t i = 0; i < comm_size; i += 4)
        if (bytes_u32(k, u32(comm + i)) < 0)
            return -1;
    if (bytes_u32(k, (uint32_t)(large_size / 12)) < 0)
        return -1;
    for (size_t i = 0; i < large_size; i += 4)
        if (bytes_u32(k, u32(large + i)) < 0)
            return -1;
    PathOut o = {k, 0};
    return path_key(s, merge, &o);
}

/* -- from a key to Attrs ----------------------------------------------------- */

static int text_u32(Bytes *t, uint32_t v)
{
    char digits[10];
    int n = 0;
    do {
        digits[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    if (bytes_reserve(t, (size_t)n) < 0)
        return -1;
    while (n)
        t->p[t->n++] = (uint8_t)digits[--n];
    return 0;
}

static int text_char(Bytes *t, char c) { return bytes_add(t, &c, 1); }

static PyObject *text_str(Bytes *t) { return PyUnicode_DecodeASCII((const char *)t->p, (Py_ssize_t)t->n, NULL); }

static PyObject *u32_or_none(int has, uint32_t v)
{
    if (has)
        return PyLong_FromUnsignedLong(v);
    Py_RETURN_NONE;
}

typedef struct {
    int family, has_lp, has_med;
    const uint8_t *hop;
    uint32_t lp, med, nstd, nlarge;
    const uint8_t *std, *large, *path, *end;
} KeyView;

static KeyView key_view(const uint8_t *key, size_t len)
{
    KeyView k;
    const uint8_t *p = key;
    k.family = p[0] & 15;
    k.has_lp = p[0] >> 4 & 1;
    k.has_med = p[0] >> 5 & 1;
    p++;
    k.hop = p;
    p += k.family == 4 ? 4 : k.family == 6 ? 16 : 0;
    k.lp = k.med = 0;
    if (k.has_lp)
        memcpy(&k.lp, p, 4), p += 4;
    if (k.has_med)
        memcpy(&k.med, p, 4), p += 4;
    memcpy(&k.nstd, p, 4);
    k.std = p + 4;
    p += 4 + 4 * (size_t)k.nstd;
    memcpy(&k.nlarge, p, 4);
    k.large = p + 4;
    p += 4 + 12 * (size_t)k.nlarge;
    k.path = p;
    k.end = key + len;
    return k;
}

static uint32_t word(const uint8_t *p, size_t i)
{
    uint32_t w;
    memcpy(&w, p + 4 * i, 4);
    return w;
}

/* A set's rank: local pref (missing 100), path length (a set counts one),
 * MED (missing 0). Worked out when a prefix has a second route only. */
static Rank set_rank(const Set *set)
{
    KeyView k = key_view(set->key, set->len);
    Rank r = {k.has_lp ? k.lp : 100, 0, k.has_med ? k.med : 0};
    for (const uint8_t *p = k.path; p < k.end;) {
        uint32_t count;
        memcpy(&count, p + 1, 4);
        r.pathlen += p[0] == 2 ? count : 1;
        p += 5 + 4 * (size_t)count;
    }
    return r;
}

/* Texts of recent values (next hops, paths, communities) by their key bytes:
 * sets of one table share them, as the twin's memos do. Direct-mapped and
 * bounded. */

static MemoEntry *memo_slot(MemoEntry *memo, const uint8_t *data, size_t len, uint64_t *hash)
{
    *hash = hash_bytes(data, len, 0x3E30);
    return &memo[*hash & ((1u << MEMO_BITS) - 1)];
}

static PyObject *memo_get(MemoEntry *e, const uint8_t *data, size_t len, uint64_t hash)
{
    if (e->value && e->hash == hash && e->len == len && (!len || memcmp(e->data, data, len) == 0))
        return Py_NewRef(e->value);
    return NULL;
}

static void memo_put(MemoEntry *e, const uint8_t *data, size_t len, uint64_t hash, PyObject *value)
{
    if (len > e->cap) {
        uint8_t *p = realloc(e->data, len);
        if (!p)
            return; /* not remembered: made again next time */
        e->data = p;
        e->cap = (uint32_t)len;
    }
    if (len)
        memcpy(e->data, data, len);
    e->hash = hash;
    e->len = (uint32_t)len;
    Py_XSETREF(e->value, Py_NewRef(value));
}

static void memo_free(MemoEntry *memo)
{
    if (!memo)
        return;
    for (size_t i = 0; i < (1u << MEMO_BITS); i++) {
        free(memo[i].data);
        Py_XDECREF(memo[i].value);
    }
    free(memo);
}

static PyObject *hop_text(const KeyView *k)
{
    if (!k->family)
        Py_RETURN_NONE;
    char ip[INET6_ADDRSTRLEN];
    if (!inet_ntop(k->family == 4 ? AF_INET : AF_INET6, k->hop, ip, sizeof ip))
        return PyErr_SetFromErrno(PyExc_OSError);
    return PyUnicode_FromString(ip);
}

/* path_asns(): (text, origin, neighbour). The origin is the last ASN of the
 * last sequence, or the member of a set of one; the neighbour the first ASN
 * (0 when the path starts with a set, and 0 is None). */
static PyObject *path_text(Parser *s, const KeyView *k)
{
    Bytes *t = &s->text;
    t->n = 0;
    int has_origin = 0, first_done = 0;
    uint32_t origin_as = 0, first = 0;
    for (const uint8_t *p = k->path; p < k->end;) {
        uint32_t count;
        memcpy(&count, p + 1, 4);
        const uint8_t *asns = p + 5;
        if (t->n && text_char(t, ' ') < 0)
            return NULL;
        if (!first_done) {
            first = p[0] == 2 ? word(asns, 0) : 0;
            first_done = 1;
        }
        if (p[0] == 1 && text_char(t, '{') < 0)
            return NULL;
        for (uint32_t i = 0; i < count; i++)
            if ((i && text_char(t, ' ') < 0) || text_u32(t, word(asns, i)) < 0)
                return NULL;
        if (p[0] == 1) {
            if (text_char(t, '}') < 0)
                return NULL;
            if (count == 1)
                has_origin = 1, origin_as = word(asns, 0);
        } else {
            has_origin = 1, origin_as = word(asns, count - 1);
        }
        p += 5 + 4 * (size_t)count;
    }
    PyObject *text = text_str(t), *origin = u32_or_none(has_origin, origin_as), *neighbour = u32_or_none(first != 0, first);
    PyObject *out = text && origin && neighbour ? PyTuple_Pack(3, text, origin, neighbour) : NULL;
    Py_XDECREF(text);
    Py_XDECREF(origin);
    Py_XDECREF(neighbour);
    return out;
}

/* Standard communities 'a:b', then large ones 'a:b:c'. */
static PyObject *communities_text(Parser *s, const KeyView *k)
{
    Bytes *t = &s->text;
    t->n = 0;
    for (uint32_t i = 0; i < k->nstd; i++) {
        uint32_t w = word(k->std, i);
        if ((i && text_char(t, ' ') < 0) || text_u32(t, w >> 16) < 0 || text_char(t, ':') < 0
            || text_u32(t, w & 0xFFFF) < 0)
            return NULL;
    }
    for (uint32_t i = 0; i < k->nlarge; i++) {
        if ((t->n && text_char(t, ' ') < 0) || text_u32(t, word(k->large, 3 * i)) < 0 || text_char(t, ':') < 0
            || text_u32(t, word(k->large, 3 * i + 1)) < 0 || text_char(t, ':') < 0
            || text_u32(t, word(k->large, 3 * i + 2)) < 0)
            return NULL;
    }
    return text_str(t);
}

static PyObject *make_attrs(Parser *s, const Set *set)
{
    KeyView k = key_view(set->key, set->len);
    PyObject *hop = NULL, *path = NULL, *lp = NULL, *med = NULL, *comm = NULL, *t = NULL, *args = NULL,
             *out = NULL;
    uint64_t h;
    uint8_t hop_key[17] = {(uint8_t)k.family};
    memcpy(hop_key + 1, k.hop, k.family == 4 ? 4 : k.family == 6 ? 16 : 0);
    size_t hop_len = 1 + (k.family == 4 ? 4 : k.family == 6 ? 16 : 0);
    MemoEntry *e = memo_slot(s->hops, hop_key, hop_len, &h);
    if (!(hop = memo_get(e, hop_key, hop_len, h))) {
        if (!(hop = hop_text(&k)))
            goto done;
        memo_put(e, hop_key, hop_len, h, hop);
    }
    e = memo_slot(s->paths, k.path, (size_t)(k.end - k.path), &h);
    if (!(path = memo_get(e, k.path, (size_t)(k.end - k.path), h))) {
        if (!(path = path_text(s, &k)))
            goto done;
        memo_put(e, k.path, (size_t)(k.end - k.path), h, path);
    }
    const uint8_t *cstart = k.std - 4;
    e = memo_slot(s->comms, cstart, (size_t)(k.path - cstart), &h);
    if (!(comm = memo_get(e, cstart, (size_t)(k.path - cstart), h))) {
        if (!(comm = communities_text(s, &k)))
            goto done;
        memo_put(e, cstart, (size_t)(k.path - cstart), h, comm);
    }
    if (!(lp = u32_or_none(k.has_lp, k.lp)) || !(med = u32_or_none(k.has_med, k.med)))
        goto done;
    if (!(t = PyTuple_Pack(7, hop, PyTuple_GET_ITEM(path, 0), PyTuple_GET_ITEM(path, 1), PyTuple_GET_ITEM(path, 2),
                           lp, med, comm))
        || !(args = PyTuple_Pack(1, t)))
        goto done;
    out = PyTuple_Type.tp_new((PyTypeObject *)s->attrs_type, args, NULL);
    /* Only str, int and None inside: no cycle can go through it, and the
     * collector need not visit the millions of them a table can have. */
    if (out && PyObject_GC_IsTracked(out))
        PyObject_GC_UnTrack(out);
done:
    Py_XDECREF(hop);
    Py_XDECREF(path);
    Py_XDECREF(lp);
    Py_XDECREF(med);
    Py_XDECREF(comm);
    Py_XDECREF(t);
    Py_XDECREF(args);
    return out;
}

/* The set number of an attribute blob: from the cache, or decoded, found by
 * value, and new sets given their Attrs in the batch's list. */
static int64_t attr_set(Parser *s, const uint8_t *blob, size_t len, int as4, int v6, uint64_t at)
{
    int kind = as4 << 1 | v6;
    uint64_t h = hash_bytes(blob, len, (uint64_t)kind + 1);
    CacheEntry *c = &s->cache[h & ((1u << CACHE_BITS) - 1)];
    if (c->blob && c->hash == h && c->kind == kind && c->len == len && memcmp(c->blob, blob, len) == 0)
        return c->set;
    if (decode(s, blob, len, as4, v6, at) < 0)
        return -1;
    int is_new;
    int64_t number = table_find(&s->sets, s->key.p, s->key.n, &is_new);
    if (number < 0)
        return -1;
    if (is_new) {
        PyObject *attrs = make_attrs(s, &s->sets.sets[number]);
        if (!attrs)
            return -1;
        int r = PyList_Append(s->new_attrs, attrs);
        Py_DECREF(attrs);
        if (r < 0)
            return -1;
    }
    if (!c->blob || len > c->cap) {
        uint8_t *copy = realloc(c->blob, len > 64 ? len : 64);
        if (!copy) /* a cache that cannot grow only decodes again */
            return number;
        c->blob = copy;
        c->cap = len > 64 ? (uint32_t)len : 64;
    }
    memcpy(c->blob, blob, len);
    c->hash = h;
    c->len = (uint32_t)len;
    c->kind = kind;
    c->set = (uint32_t)number;
    return number;
}

/* -- batches ----------------------------------------------------------------- */

/* A route of the group gp: its best decided against the group's best so far. */
static int add_route(Parser *s, const uint8_t *prefix, uint32_t set)
{
    int v6 = prefix[0];
    uint8_t is_best = 1;
    Rank a = {0, 0, 0};
    int compared = s->gbest >= 0;
    if (compared) {
        if (!s->have_grank) {
            uint32_t best_set;
            memcpy(&best_set, s->attr.p + 4 * s->gbest, 4);
            s->grank = set_rank(&s->sets.sets[best_set]);
            s->have_grank = 1;
        }
        const Rank *b = &s->grank;
        a = set_rank(&s->sets.sets[set]);
        is_best = a.lp != b->lp ? a.lp > b->lp : a.pathlen != b->pathlen ? a.pathlen < b->pathlen : a.med < b->med;
        if (is_best)
            s->best.p[s->gbest] = 0;
    }
    if (is_best) {
        s->gbest = s->n;
        s->grank = a; /* known if it was compared, else made when a second route comes */
        s->have_grank = compared;
    }
    if (bytes_add(&s->addr, prefix + 2, v6 ? 16 : 4) < 0 || bytes_add(&s->plen, prefix + 1, 1) < 0
        || bytes_u32(&s->attr, set) < 0 || bytes_add(&s->best, &is_best, 1) < 0)
        return -1;
    s->bv6 = v6;
    s->n++;
    memcpy(s->last, prefix, 18);
    s->have_last = 1;
    return 0;
}

/* Whether the batch must be handed out before a record whose routes have
 * this prefix: batches.from_routes' rule (a new family, or a full batch and a
 * new prefix). */
static int must_cut(Parser *s, const uint8_t *prefix)
{
    return s->n && (prefix[0] != s->bv6 || (memcmp(prefix, s->last, 18) != 0 && s->n >= s->size));
}

static PyObject *take_batch(Parser *s)
{
    PyObject *out = Py_BuildValue("(Oy#y#y#y#Ok)", s->bv6 ? Py_True : Py_False, s->addr.p, (Py_ssize_t)s->addr.n,
                                  s->plen.p, (Py_ssize_t)s->plen.n, s->attr.p, (Py_ssize_t)s->attr.n, s->best.p,
                                  (Py_ssize_t)s->best.n, s->new_attrs, (unsigned long)s->first_attr);
    if (!out)
        return NULL;
    PyObject *fresh = PyList_New(0);
    if (!fresh) {
        Py_DECREF(out);
        return NULL;
    }
    s->first_attr += (uint32_t)PyList_GET_SIZE(s->new_attrs);
    Py_SETREF(s->new_attrs, fresh);
    s->addr.n = s->plen.n = s->attr.n = s->best.n = 0;
    s->n = 0;
    s->gbest = -1;
    return out;
}

/* -- records ----------------------------------------------------------------- */

/* Canonical prefix: family, plen, address with the host bits zero. */
static void make_prefix(uint8_t *out, int v6, int plen, const uint8_t *raw)
{
    memset(out, 0, 18);
    out[0] = (uint8_t)v6;
    out[1] = (uint8_t)plen;
    int n = (plen + 7) >> 3;
    memcpy(out + 2, raw, (size_t)n);
    if (plen & 7)
        out[2 + n - 1] &= (uint8_t)(0xFF << (8 - (plen & 7)));
}

static void start_group(Parser *s, const uint8_t *prefix)
{
    if (!s->have_gp || memcmp(prefix, s->gp, 18) != 0)
        s->gbest = -1; /* a new group: its routes start here */
    memcpy(s->gp, prefix, 18);
    s->have_gp = 1;
}

static int count_skipped(Parser *s, PyObject *key)
{
    if (!key)
        return -1;
    PyObject *skipped = PyObject_GetAttrString(s->stats, "skipped");
    PyObject *had = skipped ? PyObject_GetItem(skipped, key) : NULL;
    PyObject *one = PyLong_FromLong(1);
    PyObject *now = had && one ? PyNumber_Add(had, one) : NULL;
    Py_XDECREF(one);
    int r = now ? PyObject_SetItem(skipped, key, now) : -1;
    Py_XDECREF(now);
    Py_XDECREF(had);
    Py_XDECREF(skipped);
    Py_DECREF(key);
    return r;
}

static int peer_table(Parser *s, size_t p, size_t end, uint64_t at)
{
    const uint8_t *b = s->buf;
    const char *short_ = "PEER_INDEX_TABLE record ends inside its peer list";
    if (p + 6 > end)
        return fail(s, at, short_);
    p += 6 + u16(b + p + 4);
    if (p + 2 > end)
        return fail(s, at, short_);
    uint32_t count = u16(b + p);
    p += 2;
    for (uint32_t i = 0; i < count; i++) {
        if (p + 5 > end)
            return fail(s, at, short_);
        size_t ip_len = b[p] & 1 ? 16 : 4, as_len = b[p] & 2 ? 4 : 2;
        p += 5;
        if (p + ip_len + as_len > end)
            return fail(s, at, short_);
        p += ip_len + as_len;
    }
    s->have_peers = 1;
    s->npeers = count;
    return 0;
}

static int rib(Parser *s, size_t pos, size_t rec_end, int code, int rtype, int sub)
{
    const uint8_t *b = s->buf;
    uint64_t at = s->base + pos;
    size_t p = pos + 16; /* after the sequence number */
    if (code & F_GENERIC) {
        if (p + 3 > rec_end) {
            s->records++;
            return fail(s, at, "RIB_GENERIC record too short for its AFI/SAFI");
        }
        int afi = u16(b + p), safi = b[p + 2];
        if (safi != 1 || (afi != 1 && afi != 2)) {
            s->records++;
            if (count_skipped(s, Py_BuildValue("(iiii)", rtype, sub, afi, safi)) < 0)
                return -1;
            s->pos = rec_end; /* need stays as it is, as in the Python twin */
            return 0;
        }
        code |= afi == 2 ? F_V6 : 0;
        p += 3;
    }
    s->records++;
    if (!s->have_peers)
        return fail(s, at, "RIB record (subtype %d) before any PEER_INDEX_TABLE: cannot tell its peers", sub);
    int v6 = code & F_V6;
    if (p >= rec_end)
        return fail(s, at, "RIB record too short for its prefix");
    int plen = b[p];
    if (plen > (v6 ? 128 : 32))
        return fail(s, at, "bad prefix length %d for %s", plen, v6 ? "IPv6" : "IPv4");
    size_t q = p + 1 + ((plen + 7) >> 3);
    if (q + 2 > rec_end)
        return fail(s, at, "RIB record too short for its prefix");
    uint8_t prefix[18];
    make_prefix(prefix, v6, plen, b + p + 1);
    uint32_t count = u16(b + q);
    if (count && must_cut(s, prefix)) {
        s->records--;
        return EMIT;
    }
    q += 2;
    start_group(s, prefix);
    int addpath = code & F_ADDPATH;
    for (uint32_t i = 0; i < count; i++) {
        size_t a = q + (addpath ? 12 : 8);
        if (a > rec_end)
            return fail(s, at, "RIB record ends inside entry %u of the %u it declares", i + 1, count);
        uint32_t peer = u16(b + q), alen = u16(b + a - 2);
        if (peer >= s->npeers)
            return fail(s, s->base + q, "RIB entry names peer %u, but the PEER_INDEX_TABLE has %u peer(s)", peer,
                        s->npeers);
        size_t e = a + alen;
        if (e > rec_end)
            return fail(s, s->base + q,
                        "RIB entry's %u bytes of attributes run %zu bytes past the end of its record "
                        "(record at byte %llu)",
                        alen, e - rec_end, (unsigned long long)at);
        int64_t set = attr_set(s, b + a, alen, 1, v6, s->base + a);
        if (set < 0 || add_route(s, prefix, (uint32_t)set) < 0)
            return -1;
        q = e;
    }
    if (q != rec_end)
        return fail(s, at, "%zu bytes left over after the %u entries of the RIB record", rec_end - q, count);
    s->routes += count;
    s->pos = rec_end;
    s->need = 12;
    return 0;
}

/* TABLE_DUMP: view u16 | seq u16 | prefix | plen u8 | status u8 |
 * originated u32 | peer ip | peer as u16 | attr_len u16 | attrs. */
static int legacy(Parser *s, size_t pos, size_t rec_end, int sub)
{
    const uint8_t *b = s->buf;
    uint64_t at = s->base + pos;
    int v6 = sub == 2;
    size_t size = v6 ? 16 : 4, p = pos + 12, fixed = 4 + size + 6, a = 0;
    s->records++;
    int fits = 0;
    /* Some writers put a 4-byte peer address in IPv6 records: tell by the length. */
    for (int k = 0; k < (v6 ? 2 : 1) && !fits; k++) {
        size_t peer_size = k ? 4 : size;
        a = p + fixed + peer_size + 4;
        fits = a <= rec_end && a + u16(b + a - 2) == rec_end;
    }
    if (!fits)
        return fail(s, at, "TABLE_DUMP record length does not match its attribute length");
    int plen = b[p + 4 + size];
    if ((size_t)plen > size * 8)
        return fail(s, at, "bad prefix length %d for %s", plen, v6 ? "IPv6" : "IPv4");
    uint8_t prefix[18];
    make_prefix(prefix, v6, plen, b + p + 4);
    if (must_cut(s, prefix)) {
        s->records--;
        return EMIT;
    }
    start_group(s, prefix);
    int64_t set = attr_set(s, b + a, rec_end - a, 0, v6, s->base + a);
    if (set < 0 || add_route(s, prefix, (uint32_t)set) < 0)
        return -1;
    s->routes++;
    s->pos = rec_end;
    s->need = 12;
    return 0;
}

/* One complete record at s->pos: 0 done, EMIT, -1 error. */
static int record(Parser *s, size_t rec_end)
{
    size_t pos = s->pos;
    const uint8_t *b = s->buf;
    int rtype = u16(b + pos + 4), sub = u16(b + pos + 6);
    if (rtype == TABLE_DUMP_V2) {
        int code = -1;
        switch (sub) {
        case 2: code = 0; break;
        case 4: code = F_V6; break;
        case 8: code = F_ADDPATH; break;
        case 10: code = F_V6 | F_ADDPATH; break;
        case 6: code = F_GENERIC; break;
        case 12: code = F_GENERIC | F_ADDPATH; break;
        }
        if (code >= 0)
            return rib(s, pos, rec_end, code, rtype, sub);
        if (sub == PEER_INDEX_TABLE) {
            s->records++;
            if (peer_table(s, pos + 12, rec_end, s->base + pos) < 0)
                return -1;
            s->peer_tables++;
            s->last_peer_table_at = (int64_t)(s->base + pos);
            s->pos = rec_end;
            s->need = 12;
            return 0;
        }
    } else if (rtype == TABLE_DUMP && (sub == 1 || sub == 2)) {
        return legacy(s, pos, rec_end, sub);
    }
    s->records++;
    if (count_skipped(s, Py_BuildValue("(ii)", rtype, sub)) < 0)
        return -1;
    s->pos = rec_end;
    s->need = 12;
    return 0;
}

/* Keep the incomplete tail, read at least what the next record needs: the
 * same calls as the Python twin makes. */
static int refill(Parser *s)
{
    size_t have = s->len - s->pos;
    if (have)
        memmove(s->buf, s->buf + s->pos, have);
    s->base += s->pos;
    s->pos = 0;
    s->len = have;
    size_t want = s->need > s->chunk ? s->need : s->chunk;
    while (have < want) {
        PyObject *chunk = PyObject_CallFunction(s->read, "n", (Py_ssize_t)(want - have));
        if (!chunk) {
            if (PyErr_ExceptionMatches(PyExc_EOFError)) { /* a compressed stream cut short */
                PyErr_Clear();
                s->eof = s->cut = 1;
                break;
            }
            return -1;
        }
        if (chunk == Py_None) { /* as the twin's `if not chunk` */
            Py_DECREF(chunk);
            s->eof = 1;
            break;
        }
        Py_buffer view;
        if (PyObject_GetBuffer(chunk, &view, PyBUF_SIMPLE) < 0) {
            Py_DECREF(chunk);
            return -1;
        }
        size_t n = (size_t)view.len;
        if (!n) {
            PyBuffer_Release(&view);
            Py_DECREF(chunk);
            s->eof = 1;
            break;
        }
        if (s->len + n > s->cap) {
            size_t cap = s->cap ? s->cap : 1 << 16;
            while (cap < s->len + n)
                cap *= 2;
            uint8_t *buf = realloc(s->buf, cap);
            if (!buf) {
                PyBuffer_Release(&view);
                Py_DECREF(chunk);
                PyErr_NoMemory();
                return -1;
            }
            s->buf = buf;
            s->cap = cap;
        }
        memcpy(s->buf + s->len, view.buf, n);
        s->len += n;
        have += n;
        PyBuffer_Release(&view);
        Py_DECREF(chunk);
    }
    return 0;
}

static int set_stat(Parser *s, const char *name, PyObject *value)
{
    if (!value)
        return -1;
    int r = PyObject_SetAttrString(s->stats, name, value);
    Py_DECREF(value);
    return r;
}

/* Stats as the Python twin leaves them (its finally clause). Keeps a pending
 * exception. */
static int write_stats(Parser *s)
{
    if (s->ended)
        return 0;
    s->ended = 1;
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyObject *count = PyLong_FromUnsignedLongLong(s->peer_tables);
    PyObject *peer_tables = count ? PyNumber_Add(s->peer_tables0, count) : NULL;
    Py_XDECREF(count);
    if (set_stat(s, "records", PyLong_FromUnsignedLongLong(s->records)) < 0
        || set_stat(s, "routes", PyLong_FromUnsignedLongLong(s->routes)) < 0
        || set_stat(s, "attr_sets", PyLong_FromUnsignedLong(s->sets.n)) < 0
        || set_stat(s, "bytes", PyLong_FromUnsignedLongLong(s->base + s->len)) < 0
        || set_stat(s, "peer_tables", peer_tables) < 0
        || (s->last_peer_table_at >= 0
            && set_stat(s, "last_peer_table_at", PyLong_FromLongLong(s->last_peer_table_at)) < 0)
        || (s->truncated_at >= 0 && set_stat(s, "truncated_at", PyLong_FromLongLong(s->truncated_at)) < 0)) {
        if (!type) /* report a failure here only when nothing else is on its way */
            return -1;
        PyErr_Clear();
    }
    PyErr_Restore(type, value, tb);
    return 0;
}

/* The end of the data: a cut record is an error, or with accept_truncated a
 * warning and Stats.truncated_at. */
static int at_end(Parser *s)
{
    size_t left = s->len - s->pos;
    if (!left && !s->cut)
        return 0;
    uint64_t at = s->base + s->pos, ends = s->base + s->len;
    PyObject *what;
    if (left >= 12) {
        const uint8_t *h = s->buf + s->pos;
        uint32_t length = u32(h + 8);
        what = PyUnicode_FromFormat("record (type %d, subtype %d) of %lu bytes runs %llu bytes past the end of "
                                    "the data (byte %llu)",
                                    u16(h + 4), u16(h + 6), (unsigned long)length,
                                    (unsigned long long)(12 + (uint64_t)length - left), (unsigned long long)ends);
    } else if (left) {
        what = PyUnicode_FromFormat("the data ends %zu bytes into a record header", left);
    } else {
        what = PyUnicode_FromFormat("no more data after %llu bytes", (unsigned long long)ends);
    }
    if (what && s->cut)
        Py_SETREF(what, PyUnicode_FromFormat("compressed stream cut short: %U", what));
    if (!what)
        return -1;
    if (!s->accept_truncated) {
        fail(s, at, "%U", what);
        Py_DECREF(what);
        return -1;
    }
    PyObject *r = PyObject_CallFunction(s->warn, "KOK", (unsigned long long)at, what, (unsigned long long)s->routes);
    Py_DECREF(what);
    if (!r)
        return -1;
    Py_DECREF(r);
    s->truncated_at = (int64_t)at;
    return 0;
}

static PyObject *parser_next(Parser *s)
{
    if (s->ended) {
        if (s->n)
            return take_batch(s);
        return NULL;
    }
    for (;;) {
        while (s->pos + 12 <= s->len) {
            size_t rec_end = s->pos + 12 + (size_t)u32(s->buf + s->pos + 8);
            if (rec_end > s->len) {
                s->need = rec_end - s->pos;
                break;
            }
            int r = record(s, rec_end);
            if (r == EMIT)
                return take_batch(s);
            if (r < 0)
                goto failed;
        }
        if (s->eof)
            break;
        if (refill(s) < 0)
            goto failed;
    }
    if (at_end(s) < 0)
        goto failed;
    if (write_stats(s) < 0) {
        s->n = 0;
        return NULL;
    }
    if (s->n)
        return take_batch(s);
    return NULL;
failed:
    write_stats(s);
    s->n = 0;
    return NULL;
}

static void parser_dealloc(Parser *s)
{
    if (s->stats && !s->ended && write_stats(s) < 0) /* given up early: Stats say how far it got */
        PyErr_WriteUnraisable((PyObject *)s);
    Py_XDECREF(s->read);
    Py_XDECREF(s->source);
    Py_XDECREF(s->stats);
    Py_XDECREF(s->dump_error);
    Py_XDECREF(s->attrs_type);
    Py_XDECREF(s->warn);
    Py_XDECREF(s->peer_tables0);
    Py_XDECREF(s->new_attrs);
    free(s->buf);
    free(s->addr.p);
    free(s->plen.p);
    free(s->attr.p);
    free(s->best.p);
    free(s->key.p);
    free(s->text.p);
    segs_free(&s->path);
    segs_free(&s->path4);
    table_free(&s->sets);
    memo_free(s->hops);
    memo_free(s->paths);
    memo_free(s->comms);
    if (s->cache) {
        for (size_t i = 0; i < (1u << CACHE_BITS); i++)
            free(s->cache[i].blob);
        free(s->cache);
    }
    Py_TYPE(s)->tp_free((PyObject *)s);
}

static PyObject *parser_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    PyObject *read, *source, *stats, *dump_error, *attrs_type, *warn;
    int accept_truncated;
    Py_ssize_t size, chunk;
    if (!PyArg_ParseTuple(args, "OUOpnOOOn", &read, &source, &stats, &accept_truncated, &size, &dump_error,
                          &attrs_type, &warn, &chunk))
        return NULL;
    if (size < 1 || chunk < 1) {
        PyErr_SetString(PyExc_ValueError, "size and chunk must be positive");
        return NULL;
    }
    if (!PyType_Check(attrs_type) || !PyType_IsSubtype((PyTypeObject *)attrs_type, &PyTuple_Type)) {
        PyErr_SetString(PyExc_TypeError, "Attrs must be a tuple type");
        return NULL;
    }
    Parser *s = (Parser *)type->tp_alloc(type, 0);
    if (!s)
        return NULL;
    s->read = Py_NewRef(read);
    s->source = Py_NewRef(source);
    s->stats = Py_NewRef(stats);
    s->dump_error = Py_NewRef(dump_error);
    s->attrs_type = Py_NewRef(attrs_type);
    s->warn = Py_NewRef(warn);
    s->accept_truncated = accept_truncated;
    s->size = size;
    s->chunk = (size_t)chunk;
    s->need = 12;
    s->gbest = -1;
    s->last_peer_table_at = s->truncated_at = -1;
    s->peer_tables0 = PyObject_GetAttrString(stats, "peer_tables");
    s->new_attrs = PyList_New(0);
    s->cache = calloc(1u << CACHE_BITS, sizeof *s->cache);
    s->hops = calloc(1u << MEMO_BITS, sizeof(MemoEntry));
    s->paths = calloc(1u << MEMO_BITS, sizeof(MemoEntry));
    s->comms = calloc(1u << MEMO_BITS, sizeof(MemoEntry));
    if (!s->peer_tables0 || !s->new_attrs || !s->cache || !s->hops || !s->paths || !s->comms) {
        if (!PyErr_Occurred())
            PyErr_NoMemory();
        s->ended = 1;
        Py_DECREF(s);
        return NULL;
    }
    return (PyObject *)s;
}

static PyTypeObject ParserType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "ipr.routing.dumps._mrt.Parser",
    .tp_basicsize = sizeof(Parser),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Parser(read, source, stats, accept_truncated, size, DumpError, Attrs, warn, chunk):\n"
              "an iterator of route batches as (v6, addr, plen, attr, best, new_attrs, first_attr).",
    .tp_new = parser_new,
    .tp_dealloc = (destructor)parser_dealloc,
    .tp_iter = PyObject_SelfIter,
    .tp_iternext = (iternextfunc)parser_next,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "ipr.routing.dumps._mrt",
    .m_doc = "MRT table dumps to route batches (twin: ipr.routing.dumps.mrt).",
    .m_size = -1,
};

PyMODINIT_FUNC PyInit__mrt(void)
{
    if (PyType_Ready(&ParserType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (!m)
        return NULL;
    if (PyModule_AddObjectRef(m, "Parser", (PyObject *)&ParserType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
