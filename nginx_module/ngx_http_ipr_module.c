/*
 * ngx_http_ipr_module: per-request TCP_INFO deltas, signed and batched into
 * ipr wire-format datagrams (docs/wire-format.md), sent over UDP to the
 * ipr collector. Log phase only; never delays or fails a request.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <netinet/tcp.h>
#include <openssl/rand.h>

#include "ipr_wire.h"


typedef struct {
    ngx_flag_t                  enable;
    ngx_http_complex_value_t   *type;
} ngx_http_ipr_loc_conf_t;


typedef struct {
    ngx_array_t                *collectors;     /* of ngx_addr_t */
    ngx_str_t                   key_file;
    uint32_t                    key_id;
    u_char                      secret[IPR_TAG_MAX * 4];
    size_t                      secret_len;
    ngx_int_t                   sender_id;
    ngx_int_t                   batch;
    ngx_msec_t                  flush_interval;
} ngx_http_ipr_main_conf_t;


/* Counters of a connection at its previous request (in the connection's pool). */
typedef struct {
    uint32_t                    retrans;
    uint32_t                    segs;
    uint64_t                    sent;
    uint64_t                    retrans_bytes;
} ngx_http_ipr_conn_t;


/* Per worker: one signer, one buffer, one timer, one socket per collector. */
typedef struct {
    ngx_http_ipr_main_conf_t   *conf;
    ipr_signer_t                signer;
    ngx_socket_t               *fds;
    u_char                     *buf;
    ngx_uint_t                  count;
    uint64_t                    instance;
    uint64_t                    sequence;
    ngx_event_t                 timer;
    ngx_uint_t                  send_errors;
    time_t                      last_error_log;
    unsigned                    ready:1;
} ngx_http_ipr_worker_t;


static ngx_int_t ngx_http_ipr_log_handler(ngx_http_request_t *r);
static void ngx_http_ipr_flush(ngx_http_ipr_worker_t *w);
static void ngx_http_ipr_timer_handler(ngx_event_t *ev);
static void ngx_http_ipr_conn_cleanup(void *data);
static char *ngx_http_ipr_collector(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
static char *ngx_http_ipr_key_file(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
static void *ngx_http_ipr_create_main_conf(ngx_conf_t *cf);
static char *ngx_http_ipr_init_main_conf(ngx_conf_t *cf, void *conf);
static void *ngx_http_ipr_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_ipr_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child);
static ngx_int_t ngx_http_ipr_init(ngx_conf_t *cf);
static ngx_int_t ngx_http_ipr_init_process(ngx_cycle_t *cycle);
static void ngx_http_ipr_exit_process(ngx_cycle_t *cycle);


static ngx_http_ipr_worker_t  ngx_http_ipr_worker;

/* 1400-byte datagrams by default: 11 records fit an Ethernet MTU. */
#define NGX_HTTP_IPR_BATCH_DEFAULT  11
#define NGX_HTTP_IPR_BATCH_MAX      ((IPR_MAX_DATAGRAM - IPR_HEADER_SIZE - IPR_TAG_MAX) \
                                     / IPR_RECORD_SIZE)
#define NGX_HTTP_IPR_TAG_LEN        16


static ngx_command_t  ngx_http_ipr_commands[] = {

    { ngx_string("ipr"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_ipr_loc_conf_t, enable),
      NULL },

    { ngx_string("ipr_traffic_type"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_set_complex_value_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_ipr_loc_conf_t, type),
      NULL },

    { ngx_string("ipr_collector"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_ipr_collector,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("ipr_key_file"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_ipr_key_file,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("ipr_sender_id"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_ipr_main_conf_t, sender_id),
      NULL },

    { ngx_string("ipr_batch"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_ipr_main_conf_t, batch),
      NULL },

    { ngx_string("ipr_flush_interval"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_ipr_main_conf_t, flush_interval),
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_ipr_module_ctx = {
    NULL,                                  /* preconfiguration */
    ngx_http_ipr_init,                     /* postconfiguration */
    ngx_http_ipr_create_main_conf,         /* create main configuration */
    ngx_http_ipr_init_main_conf,           /* init main configuration */
    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */
    ngx_http_ipr_create_loc_conf,          /* create location configuration */
    ngx_http_ipr_merge_loc_conf            /* merge location configuration */
};


ngx_module_t  ngx_http_ipr_module = {
    NGX_MODULE_V1,
    &ngx_http_ipr_module_ctx,              /* module context */
    ngx_http_ipr_commands,                 /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    ngx_http_ipr_init_process,             /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_http_ipr_exit_process,             /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


/* TCP_INFO fields by offset (struct tcp_info, native byte order). */
#define IPR_TI_BASE   104   /* rtt, rttvar, total_retrans: any Linux */
#define IPR_TI_SEGS   160   /* notsent_bytes, min_rtt, data_segs_out: 4.6 */
#define IPR_TI_RATE   168   /* delivery_rate: 4.9 */
#define IPR_TI_BYTES  216   /* bytes_sent, bytes_retrans: 4.19 */

static uint32_t
ipr_u32(const u_char *ti, size_t off)
{
    uint32_t  v;

    ngx_memcpy(&v, ti + off, sizeof(v));
    return v;
}

static uint64_t
ipr_u64(const u_char *ti, size_t off)
{
    uint64_t  v;

    ngx_memcpy(&v, ti + off, sizeof(v));
    return v;
}


static void
ipr_address(uint8_t out[16], struct sockaddr *sa, uint16_t *port)
{
    struct sockaddr_in   *sin;
#if (NGX_HAVE_INET6)
    struct sockaddr_in6  *sin6;
#endif

    switch (sa->sa_family) {

#if (NGX_HAVE_INET6)
    case AF_INET6:
        sin6 = (struct sockaddr_in6 *) sa;
        ngx_memcpy(out, &sin6->sin6_addr, 16);
        if (port) {
            *port = ntohs(sin6->sin6_port);
        }
        return;
#endif

    case AF_INET:
        sin = (struct sockaddr_in *) sa;
        ipr_address_v4(out, (uint8_t *) &sin->sin_addr);
        if (port) {
            *port = ntohs(sin->sin_port);
        }
        return;

    default:                                /* a Unix socket: "::" */
        ngx_memzero(out, 16);
    }
}


/* This connection's saved counters, or NULL the first time it is seen. */
static ngx_http_ipr_conn_t *
ngx_http_ipr_conn_state(ngx_connection_t *c, ngx_flag_t *created)
{
    ngx_pool_cleanup_t  *cln;

    for (cln = c->pool->cleanup; cln; cln = cln->next) {
        if (cln->handler == ngx_http_ipr_conn_cleanup) {
            *created = 0;
            return cln->data;
        }
    }

    cln = ngx_pool_cleanup_add(c->pool, sizeof(ngx_http_ipr_conn_t));
    if (cln == NULL) {
        return NULL;
    }
    cln->handler = ngx_http_ipr_conn_cleanup;
    ngx_memzero(cln->data, sizeof(ngx_http_ipr_conn_t));
    *created = 1;
    return cln->data;
}


static void
ngx_http_ipr_conn_cleanup(void *data)
{
    /* Nothing to free: the state lives in the pool. The handler marks it. */
}


static ngx_int_t
ngx_http_ipr_log_handler(ngx_http_request_t *r)
{
    u_char                    ti[512];
    socklen_t                 len;
    ngx_str_t                 type;
    ngx_flag_t                created;
    ngx_time_t               *tp;
    ngx_msec_int_t            ms;
    ngx_connection_t         *c, *tc;
    ngx_http_ipr_conn_t      *st;
    ngx_http_ipr_worker_t    *w = &ngx_http_ipr_worker;
    ngx_http_ipr_loc_conf_t  *lcf;
    ipr_record_t              rec;
    uint32_t                  retrans, segs;
    uint64_t                  sent, rbytes;

    lcf = ngx_http_get_module_loc_conf(r, ngx_http_ipr_module);
    if (!lcf->enable || !w->ready) {
        return NGX_OK;
    }

    c = r->connection;
    tc = c;                                  /* whose TCP state: the client's */
#if (NGX_HTTP_V2)
    if (r->stream) {
        tc = r->stream->connection->connection;
    }
#endif

    ngx_memzero(&rec, sizeof(rec));
    ipr_address(rec.client, c->sockaddr, NULL);   /* after realip, if configured */
    if (ngx_connection_local_sockaddr(c, NULL, 0) == NGX_OK) {
        ipr_address(rec.server, c->local_sockaddr, &rec.server_port);
    }

    if (lcf->type && ngx_http_complex_value(r, lcf->type, &type) == NGX_OK) {
        ipr_set_type(rec.type, type.data, type.len);
    }

    rec.status = r->err_status ? r->err_status : r->headers_out.status;
    rec.http_version = (uint8_t) (r->http_version / 1000 * 10 + r->http_version % 1000 % 10);
    if (r->http_version == NGX_HTTP_VERSION_9) {
        rec.http_version = 0;
    }
    rec.requests = 1;
    /* The body alone, as $body_bytes_sent: the WSGI agent counts the same
     * (it never sees the headers its server writes); headers and all are in
     * wire_bytes. */
    rec.response_bytes = c->sent > (off_t) r->header_size ? (uint64_t) (c->sent - r->header_size) : 0;

    tp = ngx_timeofday();
    ms = (ngx_msec_int_t) ((tp->sec - r->start_sec) * 1000 + (tp->msec - r->start_msec));
    /* A request longer than 2^32 us (71.6 minutes) is sent as the maximum. */
    ms = ngx_max(ms, 0);
    rec.duration_us = (uint64_t) ms * 1000 > 0xffffffff
                      ? 0xffffffff : (uint32_t) (ms * 1000);

#if (NGX_HTTP_SSL)
    if (c->ssl) {
        rec.flags |= IPR_F_TLS;
    }
#endif

    len = sizeof(ti);
    if (getsockopt(tc->fd, IPPROTO_TCP, TCP_INFO, ti, &len) == 0 && len >= IPR_TI_BASE) {
        st = ngx_http_ipr_conn_state(tc, &created);
        if (st != NULL) {
            if (created) {
                rec.flags |= IPR_F_NEW_CONNECTION;
            }
            retrans = ipr_u32(ti, 100);
            segs = len >= IPR_TI_SEGS ? ipr_u32(ti, 156) : 0;
            /* Bytes handed to TCP: sent plus still queued; only grows. */
            sent = len >= IPR_TI_BYTES ? ipr_u64(ti, 200) + ipr_u32(ti, 144) : 0;
            rbytes = len >= IPR_TI_BYTES ? ipr_u64(ti, 208) : 0;

            rec.flags |= IPR_F_TCPINFO;
            rec.rtt_us = ipr_u32(ti, 68);
            rec.rttvar_us = ipr_u32(ti, 72);
            rec.retrans_segs = retrans - st->retrans;
            if (len >= IPR_TI_SEGS) {
                rec.flags |= IPR_F_TCPINFO_SEGS;
                rec.min_rtt_us = ipr_u32(ti, 148);
                rec.data_segs = segs - st->segs;
            }
            if (len >= IPR_TI_RATE) {
                rec.flags |= IPR_F_DELIVERY_RATE | ((ti[7] & 1) ? IPR_F_APP_LIMITED : 0);
                rec.delivery_rate = ipr_u64(ti, 160);
            }
            if (len >= IPR_TI_BYTES) {
                rec.flags |= IPR_F_BYTES_SENT;
                rec.wire_bytes = sent - st->sent;
                rec.retrans_bytes = rbytes - st->retrans_bytes;
            }
            st->retrans = retrans;
            st->segs = segs;
            st->sent = sent;
            st->retrans_bytes = rbytes;
        }
    }

    ipr_pack_record(w->buf + IPR_HEADER_SIZE + w->count * IPR_RECORD_SIZE, &rec);
    w->count++;

    if (w->count >= (ngx_uint_t) w->conf->batch) {
        ngx_http_ipr_flush(w);

    } else if (!w->timer.timer_set) {
        ngx_add_timer(&w->timer, w->conf->flush_interval);
    }

    return NGX_OK;
}


static void
ngx_http_ipr_flush(ngx_http_ipr_worker_t *w)
{
    size_t         n;
    ngx_uint_t     i;
    ngx_time_t    *tp;
    ngx_err_t      err;
    ipr_header_t   h;

    if (w->timer.timer_set) {
        ngx_del_timer(&w->timer);
    }
    if (w->count == 0) {
        return;
    }

    tp = ngx_timeofday();
    h.key_id = w->conf->key_id;
    h.sender_id = (uint32_t) w->conf->sender_id;
    h.instance_id = w->instance;
    h.sequence = ++w->sequence;
    h.time_ms = (uint64_t) tp->sec * 1000 + tp->msec;
    h.tag_len = NGX_HTTP_IPR_TAG_LEN;

    n = ipr_finish_datagram(w->buf, &h, (unsigned) w->count, &w->signer);
    w->count = 0;
    if (n == 0) {
        ngx_log_error(NGX_LOG_ALERT, ngx_cycle->log, 0, "ipr: signing a datagram failed");
        return;
    }

    for (i = 0; i < w->conf->collectors->nelts; i++) {
        if (w->fds[i] == (ngx_socket_t) -1 || send(w->fds[i], w->buf, n, 0) == (ssize_t) n) {
            continue;
        }
        err = ngx_socket_errno;
        w->send_errors++;
        /* Rate-limited: a collector that is down must not flood the log. */
        if (ngx_time() - w->last_error_log >= 60) {
            w->last_error_log = ngx_time();
            ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, err,
                          "ipr: send() to collector %V failed (%ui datagrams lost so far)",
                          &((ngx_addr_t *) w->conf->collectors->elts)[i].name, w->send_errors);
        }
    }
}


static void
ngx_http_ipr_timer_handler(ngx_event_t *ev)
{
    ngx_http_ipr_flush(ev->data);
}


static ngx_int_t
ngx_http_ipr_init_process(ngx_cycle_t *cycle)
{
    ngx_uint_t                 i;
    ngx_addr_t                *addr;
    ngx_http_ipr_worker_t     *w = &ngx_http_ipr_worker;
    ngx_http_ipr_main_conf_t  *mcf;

    mcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_ipr_module);
    if (mcf == NULL || mcf->collectors == NULL) {
        return NGX_OK;
    }

    ngx_memzero(w, sizeof(*w));
    w->conf = mcf;
    w->buf = ngx_alloc(IPR_HEADER_SIZE + mcf->batch * IPR_RECORD_SIZE + IPR_TAG_MAX, cycle->log);
    w->fds = ngx_alloc(mcf->collectors->nelts * sizeof(ngx_socket_t), cycle->log);
    if (w->buf == NULL || w->fds == NULL) {
        return NGX_ERROR;
    }
    if (ipr_signer_init(&w->signer, mcf->secret, mcf->secret_len) != 0) {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, 0, "ipr: cannot set up HMAC-SHA256");
        return NGX_ERROR;
    }
    /* A new random instance id per worker process (the wire format's rule). */
    if (RAND_bytes((u_char *) &w->instance, sizeof(w->instance)) != 1) {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, 0, "ipr: no random instance id");
        return NGX_ERROR;
    }

    addr = mcf->collectors->elts;
    for (i = 0; i < mcf->collectors->nelts; i++) {
        w->fds[i] = ngx_socket(addr[i].sockaddr->sa_family, SOCK_DGRAM, 0);
        if (w->fds[i] == (ngx_socket_t) -1
            || ngx_nonblocking(w->fds[i]) == -1
            || connect(w->fds[i], addr[i].sockaddr, addr[i].socklen) == -1)
        {
            ngx_log_error(NGX_LOG_ERR, cycle->log, ngx_socket_errno,
                          "ipr: cannot open a socket to collector %V", &addr[i].name);
            if (w->fds[i] != (ngx_socket_t) -1) {
                ngx_close_socket(w->fds[i]);
                w->fds[i] = (ngx_socket_t) -1;
            }
        }
    }

    w->timer.handler = ngx_http_ipr_timer_handler;
    w->timer.data = w;
    w->timer.log = cycle->log;
    w->timer.cancelable = 1;   /* a graceful shutdown does not wait for it */
    w->ready = 1;
    return NGX_OK;
}


static void
ngx_http_ipr_exit_process(ngx_cycle_t *cycle)
{
    ngx_uint_t              i;
    ngx_http_ipr_worker_t  *w = &ngx_http_ipr_worker;

    if (!w->ready) {
        return;
    }
    ngx_http_ipr_flush(w);             /* what the last requests left */
    w->ready = 0;
    for (i = 0; i < w->conf->collectors->nelts; i++) {
        if (w->fds[i] != (ngx_socket_t) -1) {
            ngx_close_socket(w->fds[i]);
        }
    }
    ipr_signer_free(&w->signer);
    ngx_free(w->fds);
    ngx_free(w->buf);
}


static char *
ngx_http_ipr_collector(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_ipr_main_conf_t *mcf = conf;

    ngx_url_t    u;
    ngx_str_t   *value;
    ngx_addr_t  *addr;

    value = cf->args->elts;
    ngx_memzero(&u, sizeof(ngx_url_t));
    u.url = value[1];
    u.no_resolve = 1;

    if (ngx_parse_url(cf->pool, &u) != NGX_OK || u.naddrs == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "ipr_collector \"%V\": %s", &value[1],
                           u.err ? u.err : "expected an IPv4 or [IPv6] address and a port");
        return NGX_CONF_ERROR;
    }
    if (u.no_port) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "ipr_collector \"%V\": a port is required", &value[1]);
        return NGX_CONF_ERROR;
    }

    if (mcf->collectors == NULL) {
        mcf->collectors = ngx_array_create(cf->pool, 2, sizeof(ngx_addr_t));
        if (mcf->collectors == NULL) {
            return NGX_CONF_ERROR;
        }
    }
    addr = ngx_array_push(mcf->collectors);
    if (addr == NULL) {
        return NGX_CONF_ERROR;
    }
    *addr = u.addrs[0];
    return NGX_CONF_OK;
}


/* The key file: one line "KEY_ID:SECRET_HEX"; lines starting with # are comments. */
static char *
ngx_http_ipr_key_file(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_ipr_main_conf_t *mcf = conf;

    u_char      buf[1024], *p, *colon, *end;
    ssize_t     n;
    ngx_fd_t    fd;
    ngx_str_t  *value, name;
    ngx_int_t   id, byte;
    size_t      hex;

    if (mcf->key_file.data) {
        return "is duplicate";
    }
    value = cf->args->elts;
    name = value[1];
    if (ngx_conf_full_name(cf->cycle, &name, 1) != NGX_OK) {
        return NGX_CONF_ERROR;
    }
    mcf->key_file = name;

    fd = ngx_open_file(name.data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);
    if (fd == NGX_INVALID_FILE) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno, "ipr_key_file \"%V\": cannot open", &name);
        return NGX_CONF_ERROR;
    }
    n = ngx_read_fd(fd, buf, sizeof(buf) - 1);
    ngx_close_file(fd);
    if (n <= 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno, "ipr_key_file \"%V\": cannot read", &name);
        return NGX_CONF_ERROR;
    }
    buf[n] = '\0';

    for (p = buf; *p == '#' || *p == '\n' || *p == '\r' || *p == ' '; ) {
        if (*p == '#') {
            while (*p && *p != '\n') {
                p++;
            }
        } else {
            p++;
        }
    }
    end = p;
    while (*end && *end != '\n' && *end != '\r' && *end != ' ') {
        end++;
    }
    colon = ngx_strlchr(p, end, ':');
    id = colon ? ngx_atoi(p, colon - p) : NGX_ERROR;
    hex = colon ? (size_t) (end - colon - 1) : 0;
    if (id == NGX_ERROR || id > 0xffffffff || hex < 32 || hex % 2 || hex / 2 > sizeof(mcf->secret)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "ipr_key_file \"%V\": expected one line KEY_ID:SECRET_HEX "
                           "with a secret of 16 to %uz bytes", &name, sizeof(mcf->secret));
        return NGX_CONF_ERROR;
    }
    mcf->key_id = (uint32_t) id;
    for (mcf->secret_len = 0; mcf->secret_len < hex / 2; mcf->secret_len++) {
        byte = ngx_hextoi(colon + 1 + 2 * mcf->secret_len, 2);
        if (byte == NGX_ERROR) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "ipr_key_file \"%V\": the secret is not hex",
                               &name);
            return NGX_CONF_ERROR;
        }
        mcf->secret[mcf->secret_len] = (u_char) byte;
    }
    ngx_explicit_memzero(buf, sizeof(buf));
    return NGX_CONF_OK;
}


static void *
ngx_http_ipr_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_ipr_main_conf_t  *mcf;

    mcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_ipr_main_conf_t));
    if (mcf == NULL) {
        return NULL;
    }
    mcf->sender_id = NGX_CONF_UNSET;
    mcf->batch = NGX_CONF_UNSET;
    mcf->flush_interval = NGX_CONF_UNSET_MSEC;
    return mcf;
}


static char *
ngx_http_ipr_init_main_conf(ngx_conf_t *cf, void *conf)
{
    ngx_http_ipr_main_conf_t *mcf = conf;

    ngx_conf_init_value(mcf->batch, NGX_HTTP_IPR_BATCH_DEFAULT);
    ngx_conf_init_msec_value(mcf->flush_interval, 1000);

    if (mcf->batch < 1 || mcf->batch > NGX_HTTP_IPR_BATCH_MAX) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0, "ipr_batch %i: must be 1..%d records",
                      mcf->batch, (int) NGX_HTTP_IPR_BATCH_MAX);
        return NGX_CONF_ERROR;
    }
    if (mcf->flush_interval < 1 || mcf->flush_interval > 5000) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0, "ipr_flush_interval: must be 1ms..5s");
        return NGX_CONF_ERROR;
    }
    if (mcf->collectors == NULL) {
        return NGX_CONF_OK;                     /* not used; "ipr on" is checked below */
    }
    if (mcf->key_file.data == NULL) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0, "ipr_collector is set but ipr_key_file is not");
        return NGX_CONF_ERROR;
    }
    if (mcf->sender_id == NGX_CONF_UNSET || mcf->sender_id < 0 || mcf->sender_id > 0xffffffff) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "ipr_collector is set but ipr_sender_id (0..4294967295) is not");
        return NGX_CONF_ERROR;
    }
    return NGX_CONF_OK;
}


static void *
ngx_http_ipr_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_ipr_loc_conf_t  *conf;

    conf = ngx_pcalloc(cf->pool, sizeof(ngx_http_ipr_loc_conf_t));
    if (conf == NULL) {
        return NULL;
    }
    conf->enable = NGX_CONF_UNSET;
    conf->type = NGX_CONF_UNSET_PTR;
    return conf;
}


static char *
ngx_http_ipr_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_http_ipr_loc_conf_t *prev = parent;
    ngx_http_ipr_loc_conf_t *conf = child;

    ngx_http_ipr_main_conf_t  *mcf;

    ngx_conf_merge_value(conf->enable, prev->enable, 0);
    ngx_conf_merge_ptr_value(conf->type, prev->type, NULL);

    mcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_ipr_module);
    if (conf->enable && mcf->collectors == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "\"ipr on\" needs an ipr_collector in the http block");
        return NGX_CONF_ERROR;
    }
    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_ipr_init(ngx_conf_t *cf)
{
    ngx_http_handler_pt        *h;
    ngx_http_core_main_conf_t  *cmcf;

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);
    h = ngx_array_push(&cmcf->phases[NGX_HTTP_LOG_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }
    *h = ngx_http_ipr_log_handler;
    return NGX_OK;
}
