/*
 * Handshake load generator for bench/run.js, the C counterpart of loadgen.js's "handshakes" mode.
 * Node's net.connect costs the client about 66 µs per attempt, more than the servers spend on one, so
 * with loadgen.js the client's core was the limit of both handshake rows. Here an attempt is a handful
 * of system calls on one thread: socket, connect, send, epoll_ctl, read, close.
 *
 * Same line protocol as loadgen.js (settings JSON in argv[1]):
 *   stdout  CONNECTED 0     ready; waiting for GO
 *           RESULT <json>   count, seconds, perSecond, clientCpu, clientElu, errors, firstError
 *           ERROR <text>    it could not run
 *   stdin   GO              start: `warmup` seconds, then the measured window of `seconds`
 *           EOF             exit (the harness is gone)
 *
 * `concurrency` attempts are kept in flight. Each one: connect to 127.0.0.1:port, send the upgrade,
 * read the response head, check "HTTP/1.1 101 " and Sec-WebSocket-Accept; then either send a masked
 * Close (1000) and read until the server closes TCP, or (`drop`) close at once. An attempt that takes
 * more than 5 s, is refused, reset or answered wrongly counts as an error, and the slot starts again.
 *
 * Built by the harness: gcc -O2 -Wall -Wextra -o <cache path> bench/load/handshake-gen.c
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define KEYS 64
#define MAX_SLOTS 4096
#define HEAD_MAX 4096
#define ATTEMPT_TIMEOUT_NS (5 * 1000000000LL)
/* A slot whose connect failed waits this long before it tries again, so that a refused port or an
   exhausted ephemeral port range is counted at a bounded rate instead of spinning the core. */
#define RETRY_DELAY_NS (10 * 1000000LL)
#define STDIN_TAG UINT64_MAX
/* Drop mode: the client closes first, so its side of every connection sits in TIME_WAIT for 60 s,
   and with one source address connect() walks past thousands of recently used ports to find one
   (perf: about 40% of this process's CPU in __inet_check_established and tcp_twsk_unique at 14k/s).
   Spreading the attempts over 127.0.0.1 .. 127.0.0.SOURCES gives each address its own port range. */
#define SOURCES 16

/* ---- SHA-1 (RFC 3174) and base64, for the keys and their expected Sec-WebSocket-Accept ---------- */

static uint32_t rol(uint32_t x, int n) { return (x << n) | (x >> (32 - n)); }

static void sha1(const unsigned char *msg, size_t len, unsigned char out[20]) {
  uint32_t h[5] = {0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0};
  size_t total = ((len + 8) / 64 + 1) * 64;
  unsigned char *buf = calloc(total, 1);
  if (!buf) abort();
  memcpy(buf, msg, len);
  buf[len] = 0x80;
  uint64_t bits = (uint64_t)len * 8;
  for (int i = 0; i < 8; i++) buf[total - 1 - i] = (unsigned char)(bits >> (8 * i));
  for (size_t off = 0; off < total; off += 64) {
    uint32_t w[80];
    for (int i = 0; i < 16; i++)
      w[i] = (uint32_t)buf[off + 4 * i] << 24 | (uint32_t)buf[off + 4 * i + 1] << 16 |
             (uint32_t)buf[off + 4 * i + 2] << 8 | buf[off + 4 * i + 3];
    for (int i = 16; i < 80; i++) w[i] = rol(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
    for (int i = 0; i < 80; i++) {
      uint32_t f, k;
      if (i < 20) f = (b & c) | (~b & d), k = 0x5A827999;
      else if (i < 40) f = b ^ c ^ d, k = 0x6ED9EBA1;
      else if (i < 60) f = (b & c) | (b & d) | (c & d), k = 0x8F1BBCDC;
      else f = b ^ c ^ d, k = 0xCA62C1D6;
      uint32_t t = rol(a, 5) + f + e + k + w[i];
      e = d, d = c, c = rol(b, 30), b = a, a = t;
    }
    h[0] += a, h[1] += b, h[2] += c, h[3] += d, h[4] += e;
  }
  free(buf);
  for (int i = 0; i < 20; i++) out[i] = (unsigned char)(h[i / 4] >> (24 - 8 * (i % 4)));
}

static void base64(const unsigned char *in, size_t len, char *out) {
  static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  size_t o = 0;
  for (size_t i = 0; i < len; i += 3) {
    uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < len ? (uint32_t)in[i + 1] << 8 : 0) |
                 (i + 2 < len ? in[i + 2] : 0);
    out[o++] = abc[v >> 18 & 63];
    out[o++] = abc[v >> 12 & 63];
    out[o++] = i + 1 < len ? abc[v >> 6 & 63] : '=';
    out[o++] = i + 2 < len ? abc[v & 63] : '=';
  }
  out[o] = 0;
}

/* ---- settings: the flat JSON object that bench/run.js writes with JSON.stringify --------------- */

/* The value of "key" as a number (true is 1, false 0), or `fallback` when it is not there. */
static double setting(const char *json, const char *key, double fallback) {
  char quoted[64];
  snprintf(quoted, sizeof quoted, "\"%s\"", key);
  const char *p = strstr(json, quoted);
  if (!p) return fallback;
  p += strlen(quoted);
  while (*p == ' ' || *p == ':') p++;
  if (!strncmp(p, "true", 4)) return 1;
  if (!strncmp(p, "false", 5)) return 0;
  char *end;
  double v = strtod(p, &end);
  return end == p ? fallback : v;
}

/* ---- state ---------------------------------------------------------------------------------- */

enum phase { IDLE, WAIT_RETRY, CONNECTING, HEAD, CLOSING };

struct slot {
  int fd;
  enum phase phase;
  uint32_t gen; /* tells a stale epoll event from one for the slot's current socket */
  int key;
  int64_t started, retry_at;
  size_t head_len;
  char head[HEAD_MAX];
};

static struct slot *slots;
static int nslots, epfd, port, drop;
static struct sockaddr_in target;
static char requests[KEYS][256];
static size_t request_len[KEYS];
static char accepts[KEYS][32]; /* base64 of SHA-1(key + GUID): 28 characters */
static unsigned char close_frame[8];
static int next_key;
static int spread_sources; /* drop mode, until a bind to 127.0.0.x fails */
static unsigned next_source;
static int running;
static int waiting_retries;
static uint64_t done, errors;
static char first_error[256];
static unsigned char readbuf[64 * 1024];

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static double cpu_seconds(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
         ru.ru_stime.tv_usec / 1e6;
}

/* One line on stdout in one write: the harness reads lines, and a pipe write of this size is atomic. */
static void say(const char *fmt, ...) {
  char line[1024];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(line, sizeof line - 1, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  if (n > (int)sizeof line - 2) n = sizeof line - 2;
  line[n++] = '\n';
  if (write(1, line, (size_t)n) < 0) exit(0); /* the harness is gone */
}

/* ---- attempts ------------------------------------------------------------------------------- */

static void start(struct slot *s);

static void release(struct slot *s) {
  if (s->fd >= 0) close(s->fd);
  s->fd = -1;
  s->phase = IDLE;
}

static void fail(struct slot *s, int before_connected, const char *fmt, ...) {
  errors++;
  if (!first_error[0]) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(first_error, sizeof first_error, fmt, ap);
    va_end(ap);
  }
  release(s);
  if (before_connected) {
    s->phase = WAIT_RETRY;
    s->retry_at = now_ns() + RETRY_DELAY_NS;
    waiting_retries++;
  } else {
    start(s);
  }
}

static void succeed(struct slot *s) {
  done++;
  release(s);
  start(s);
}

/* Sends the upgrade request; 1 if sent, 0 if the socket is not connected yet, -1 on failure. */
static int send_request(struct slot *s) {
  ssize_t n = send(s->fd, requests[s->key], request_len[s->key], MSG_NOSIGNAL);
  if (n == (ssize_t)request_len[s->key]) {
    s->phase = HEAD;
    return 1;
  }
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 0;
  /* Counted as a failed connect (it waits before the next try): also keeps start() from recursing. */
  if (n < 0) fail(s, 1, "connect: %s", strerror(errno));
  else fail(s, 1, "short write of the upgrade request");
  return -1;
}

static void start(struct slot *s) {
  if (!running) return;
  s->started = now_ns();
  s->head_len = 0;
  s->gen++;
  s->key = next_key++ & (KEYS - 1);
  s->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (s->fd < 0) {
    fail(s, 1, "socket: %s", strerror(errno));
    return;
  }
  int one = 1;
  setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (spread_sources) {
    /* IP_BIND_ADDRESS_NO_PORT: the port is picked at connect(), for the whole 4-tuple. */
    struct sockaddr_in source = {.sin_family = AF_INET};
    source.sin_addr.s_addr = htonl(INADDR_LOOPBACK + next_source++ % SOURCES);
    setsockopt(s->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    if (bind(s->fd, (struct sockaddr *)&source, sizeof source) < 0) spread_sources = 0;
  }
  if (connect(s->fd, (struct sockaddr *)&target, sizeof target) < 0 && errno != EINPROGRESS) {
    /* EADDRNOTAVAIL here is the ephemeral port range exhausted (client-side TIME_WAIT in drop mode). */
    fail(s, 1, "connect: %s", strerror(errno));
    return;
  }
  s->phase = CONNECTING;
  /* Over loopback the SYN, SYN-ACK and ACK are processed before connect() returns, so the request
     can usually go at once, which saves waiting for EPOLLOUT. */
  int sent = send_request(s);
  if (sent < 0) return;
  struct epoll_event ev = {
      .events = EPOLLIN | EPOLLRDHUP | EPOLLET | (sent ? 0 : EPOLLOUT),
      .data.u64 = (uint64_t)s->gen << 32 | (uint32_t)(s - slots),
  };
  if (epoll_ctl(epfd, EPOLL_CTL_ADD, s->fd, &ev) < 0) fail(s, 1, "epoll_ctl: %s", strerror(errno));
}

/* The response head is complete: check it, then close or drop. */
static void on_head(struct slot *s) {
  char *head = s->head;
  char *eol = strstr(head, "\r\n");
  if (strncmp(head, "HTTP/1.1 101 ", 13) != 0) {
    fail(s, 0, "%.*s", (int)(eol ? eol - head : (long)strlen(head)), head);
    return;
  }
  const char *accept = NULL;
  for (char *line = eol; line; line = strstr(line + 2, "\r\n")) {
    if (!strncasecmp(line + 2, "Sec-WebSocket-Accept:", 21)) {
      accept = line + 23;
      while (*accept == ' ' || *accept == '\t') accept++;
      break;
    }
  }
  if (!accept) {
    fail(s, 0, "no Sec-WebSocket-Accept in the 101");
    return;
  }
  const char *want = accepts[s->key];
  size_t len = strlen(want);
  if (strncmp(accept, want, len) != 0 || (accept[len] != '\r' && accept[len] != ' ' && accept[len] != '\t')) {
    fail(s, 0, "wrong Sec-WebSocket-Accept");
    return;
  }
  if (drop) {
    /* A plain close(), as node's socket.destroy() does in loadgen.js (strace: close(fd), no
       SO_LINGER, no shutdown): the kernel sends a FIN, not a RST, as nothing is left unread. */
    succeed(s);
    return;
  }
  if (send(s->fd, close_frame, sizeof close_frame, MSG_NOSIGNAL) != (ssize_t)sizeof close_frame) {
    fail(s, 0, "sending Close: %s", strerror(errno));
    return;
  }
  /* The server answers with its Close and closes TCP first (RFC 6455 §7.1.1); that FIN is the end. */
  s->phase = CLOSING;
}

static void on_event(struct slot *s, uint32_t events) {
  if (s->phase == CONNECTING) {
    if (events & EPOLLERR) {
      int err = 0;
      socklen_t len = sizeof err;
      getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len);
      fail(s, 1, "connect: %s", strerror(err ? err : ECONNREFUSED));
      return;
    }
    if (!(events & EPOLLOUT) || send_request(s) <= 0) return;
  }
  if (!(events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))) return;
  /* Edge-triggered: read until the kernel has nothing more (or the attempt is over). */
  for (;;) {
    ssize_t n = read(s->fd, readbuf, sizeof readbuf);
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      if (errno == EINTR) continue;
      fail(s, 0, "%s: %s", s->phase == HEAD ? "reading the 101" : "waiting for the close", strerror(errno));
      return;
    }
    if (n == 0) {
      if (s->phase == CLOSING) succeed(s);
      else fail(s, 0, "closed before the handshake finished");
      return;
    }
    if (s->phase == CLOSING) continue; /* the server's Close frame: discarded */
    size_t old = s->head_len;
    if (old + (size_t)n > HEAD_MAX - 1) {
      fail(s, 0, "response head longer than %d bytes", HEAD_MAX - 1);
      return;
    }
    memcpy(s->head + old, readbuf, (size_t)n);
    s->head_len += (size_t)n;
    s->head[s->head_len] = 0;
    /* Bytes after the head (none from these servers before our Close) are ignored. */
    if (strstr(s->head + (old > 3 ? old - 3 : 0), "\r\n\r\n")) {
      on_head(s);
      if (s->phase != CLOSING) return; /* done or failed: the slot holds a new attempt now */
    }
  }
}

/* ---- the run -------------------------------------------------------------------------------- */

static void json_string(char *out, size_t size, const char *s) {
  size_t o = 0;
  out[o++] = '"';
  for (; *s && o + 8 < size; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\') out[o++] = '\\', out[o++] = (char)c;
    else if (c < 0x20 || c >= 0x7f) o += (size_t)snprintf(out + o, size - o, "\\u%04x", c);
    else out[o++] = (char)c;
  }
  out[o++] = '"';
  out[o] = 0;
}

/* Reads harness commands; returns 1 when GO has come. EOF exits. */
static int read_stdin(char *pending, size_t *pending_len, size_t size) {
  ssize_t n = read(0, pending + *pending_len, size - 1 - *pending_len);
  if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) exit(0);
  if (n < 0) return 0;
  *pending_len += (size_t)n;
  pending[*pending_len] = 0;
  int go = 0;
  char *nl;
  while ((nl = strchr(pending, '\n'))) {
    *nl = 0;
    char *line = pending;
    while (*line == ' ' || *line == '\r') line++;
    if (!strncmp(line, "GO", 2)) go = 1;
    size_t rest = *pending_len - (size_t)(nl + 1 - pending);
    memmove(pending, nl + 1, rest + 1);
    *pending_len = rest;
  }
  if (*pending_len >= size - 1) *pending_len = 0; /* a line that long is nothing we know */
  return go;
}

int main(int argc, char **argv) {
  signal(SIGPIPE, SIG_IGN);
  const char *json = argc > 1 ? argv[1] : "{}";
  if (!strstr(json, "\"handshakes\"")) {
    say("ERROR handshake-gen only runs the handshakes mode");
    return 1;
  }
  port = (int)setting(json, "port", 0);
  nslots = (int)setting(json, "concurrency", 16);
  drop = setting(json, "drop", 0) != 0;
  spread_sources = drop;
  double warmup = setting(json, "warmup", 1), seconds = setting(json, "seconds", 5);
  if (port <= 0 || port > 65535 || nslots < 1 || nslots > MAX_SLOTS) {
    say("ERROR bad settings: %s", json);
    return 1;
  }
  target.sin_family = AF_INET;
  target.sin_port = htons((uint16_t)port);
  target.sin_addr.s_addr = htonl(INADDR_LOOPBACK);

  /* Keys, their requests and expected accepts, made once. */
  for (int i = 0; i < KEYS; i++) {
    unsigned char raw[16];
    if (getrandom(raw, sizeof raw, 0) != (ssize_t)sizeof raw) {
      say("ERROR getrandom: %s", strerror(errno));
      return 1;
    }
    char key[32], cat[128];
    unsigned char digest[20];
    base64(raw, sizeof raw, key);
    snprintf(cat, sizeof cat, "%s258EAFA5-E914-47DA-95CA-C5AB0DC85B11", key);
    sha1((unsigned char *)cat, strlen(cat), digest);
    base64(digest, sizeof digest, accepts[i]);
    int n = snprintf(requests[i], sizeof requests[i],
                     "GET / HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n",
                     port, key);
    request_len[i] = (size_t)n;
  }
  /* Masked Close with code 1000: FIN + opcode 8, MASK + length 2, a random key, the masked code. */
  close_frame[0] = 0x88;
  close_frame[1] = 0x82;
  if (getrandom(close_frame + 2, 4, 0) != 4) return 1;
  close_frame[6] = 0x03 ^ close_frame[2];
  close_frame[7] = 0xe8 ^ close_frame[3];

  slots = calloc((size_t)nslots, sizeof *slots);
  epfd = epoll_create1(EPOLL_CLOEXEC);
  if (!slots || epfd < 0) {
    say("ERROR setup: %s", strerror(errno));
    return 1;
  }
  for (int i = 0; i < nslots; i++) slots[i].fd = -1;

  /* stdin in the same loop, so that EOF ends the process whenever it comes. */
  int stdin_polled = 1;
  fcntl(0, F_SETFL, fcntl(0, F_GETFL) | O_NONBLOCK);
  struct epoll_event sev = {.events = EPOLLIN, .data.u64 = STDIN_TAG};
  if (epoll_ctl(epfd, EPOLL_CTL_ADD, 0, &sev) < 0) stdin_polled = 0; /* a file or a tty: read for GO */
  char pending[512];
  size_t pending_len = 0;

  say("CONNECTED 0");
  if (!stdin_polled) {
    fcntl(0, F_SETFL, fcntl(0, F_GETFL) & ~O_NONBLOCK);
    while (!read_stdin(pending, &pending_len, sizeof pending)) {
    }
  } else {
    for (;;) {
      struct epoll_event ev;
      int n = epoll_wait(epfd, &ev, 1, -1);
      if (n == 1 && read_stdin(pending, &pending_len, sizeof pending)) break;
    }
  }

  int64_t go = now_ns();
  int64_t warm_end = go + (int64_t)(warmup * 1e9), window_end = warm_end + (int64_t)(seconds * 1e9);
  int64_t next_sweep = go + 1000000000LL;
  int in_window = 0;
  uint64_t count0 = 0;
  double cpu0 = 0;
  int64_t t0 = 0;
  running = 1;
  for (int i = 0; i < nslots; i++) start(&slots[i]);

  struct epoll_event events[256];
  for (;;) {
    int64_t now = now_ns();
    if (!in_window && now >= warm_end) {
      in_window = 1;
      count0 = done;
      cpu0 = cpu_seconds();
      t0 = now;
    }
    if (now >= window_end) break;
    if (now >= next_sweep) {
      for (int i = 0; i < nslots; i++) {
        struct slot *s = &slots[i];
        if (s->phase >= CONNECTING && now - s->started > ATTEMPT_TIMEOUT_NS) fail(s, 0, "timeout");
      }
      next_sweep = now + 1000000000LL;
    }
    int64_t wake = in_window ? window_end : warm_end;
    if (next_sweep < wake) wake = next_sweep;
    if (waiting_retries > 0) {
      for (int i = 0; i < nslots; i++) {
        struct slot *s = &slots[i];
        if (s->phase == WAIT_RETRY && s->retry_at <= now) {
          waiting_retries--;
          s->phase = IDLE;
          start(s);
        }
        /* again: the new attempt may have failed to connect too */
        if (s->phase == WAIT_RETRY && s->retry_at < wake) wake = s->retry_at;
      }
    }
    int timeout = wake <= now ? 0 : (int)((wake - now + 999999) / 1000000);
    int n = epoll_wait(epfd, events, 256, timeout);
    for (int i = 0; i < n; i++) {
      uint64_t tag = events[i].data.u64;
      if (tag == STDIN_TAG) {
        read_stdin(pending, &pending_len, sizeof pending);
        continue;
      }
      struct slot *s = &slots[(uint32_t)tag];
      if ((uint32_t)(tag >> 32) != s->gen || s->fd < 0) continue;
      on_event(s, events[i].events);
    }
  }

  double wall = (double)(now_ns() - t0) / 1e9;
  double cpu = (cpu_seconds() - cpu0) / wall;
  uint64_t count = done - count0;
  char err[600] = "";
  if (first_error[0]) {
    char quoted[560];
    json_string(quoted, sizeof quoted, first_error);
    snprintf(err, sizeof err, ",\"firstError\":%s", quoted);
  }
  /* clientElu is the same CPU fraction: the harness reads it as how busy the generator was. */
  say("RESULT {\"count\":%llu,\"seconds\":%.6f,\"perSecond\":%.3f,\"clientCpu\":%.4f,\"clientElu\":%.4f,"
      "\"errors\":%llu%s,\"loadGenerator\":\"c\"}",
      (unsigned long long)count, wall, (double)count / wall, cpu, cpu, (unsigned long long)errors, err);
  return 0;
}
