/* The benchmark's load generator: N SSE streams over one epoll loop.
 *
 * Usage: client HOST PORT PATH N [STALL]
 *   Opens N connections ("GET PATH<sep>cid=c<i> HTTP/1.1"), decodes chunked or
 *   raw bodies, and reads the SSE "data:" lines the publisher sends:
 *       data: B <seq> <scheduled send time, microseconds since the epoch> <padding>
 *   (a leading '"' is skipped: flask-sse JSON-encodes the data). Latency is
 *   receive time minus the *scheduled* send time, so publisher stalls count.
 *   STALL (default 0): that many of the N streams (the first ones) ask for a
 *   4 KiB receive buffer and, once their headers have arrived, are never read
 *   again: clients that stop reading. They count neither as alive nor in any
 *   statistic; what the server does with them is read from its own counters.
 *
 * Commands on stdin, one per line; answers on stdout, one JSON object per line:
 *   (at start)      -> {"ready":n,"failed":f}   once every stream has its headers
 *   START <first>   begin a step whose events have seq >= first
 *   STOP <last>     end it (last = the step's last seq) -> the step's statistics
 *   QUIT            close everything and exit
 *
 * CPU: getrusage(RUSAGE_SELF) between START and STOP, reported as cpu_s/wall_s.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BUCKET_US 10                  /* histogram resolution */
#define NBUCKETS (20 * 1000 * 1000 / BUCKET_US) /* up to 20 s; beyond goes to the last */
#define RBUF 65536
#define LINE_MAX_LEN 4096
#define MAX_CONNECTING 512

enum { S_CONNECTING, S_HEAD, S_CHUNK_SIZE, S_CHUNK_DATA, S_CHUNK_CRLF, S_RAW, S_DEAD };

typedef struct {
    int fd;
    int state;
    int chunked;
    long chunk_left;
    char head[8192];
    int head_len;
    char line[LINE_MAX_LEN];
    int line_len;
    char szline[64];
    int sz_len;
    long long last_seq; /* highest seq seen; -1 none */
    int stall;          /* never read after the headers */
} conn_t;

static conn_t *conns;
static int nconns, nstall;
static uint32_t *hist;
static long long hist_max_us, hist_count;
static long long recv_in_step, gaps, reorder, late, bytes_in;
static long long step_first = -1, step_last = -1;
static int in_step;

static long long now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000000LL + ts.tv_nsec / 1000;
}

static double mono_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static double cpu_s(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

static void on_data_line(conn_t *c, const char *p, int len) {
    /* p points after "data:" */
    const char *end = p + len;
    while (p < end && *p == ' ') p++;
    if (p < end && *p == '"') p++;
    if (end - p < 2 || p[0] != 'B' || p[1] != ' ') return;
    p += 2;
    long long seq = 0, stamp = 0;
    while (p < end && *p >= '0' && *p <= '9') seq = seq * 10 + (*p++ - '0');
    if (p < end && *p == ' ') p++;
    while (p < end && *p >= '0' && *p <= '9') stamp = stamp * 10 + (*p++ - '0');
    long long now = now_us();
    if (seq <= c->last_seq) {
        reorder++;
        return;
    }
    if (c->last_seq >= 0 && seq > c->last_seq + 1) gaps += seq - c->last_seq - 1;
    c->last_seq = seq;
    if (!in_step || seq < step_first) {
        late++;
        return;
    }
    recv_in_step++;
    long long lat = now - stamp;
    if (lat < 0) lat = 0;
    long long b = lat / BUCKET_US;
    if (b >= NBUCKETS) b = NBUCKETS - 1;
    hist[b]++;
    hist_count++;
    if (lat > hist_max_us) hist_max_us = lat;
}

static void on_body(conn_t *c, const char *p, long n) {
    for (long i = 0; i < n; i++) {
        char ch = p[i];
        if (ch == '\n' || ch == '\r') {
            if (c->line_len >= 5 && memcmp(c->line, "data:", 5) == 0)
                on_data_line(c, c->line + 5, c->line_len - 5);
            c->line_len = 0;
        } else if (c->line_len < LINE_MAX_LEN) {
            c->line[c->line_len++] = ch;
        }
    }
}

static int ready_count, failed_count;

static void kill_conn(int epfd, conn_t *c) {
    if (c->state == S_DEAD) return;
    if (c->state == S_CONNECTING || c->state == S_HEAD) failed_count++;
    epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->state = S_DEAD;
}

/* Feed received bytes through the HTTP framing; returns -1 on a framing error. */
static int feed(conn_t *c, const char *p, long n) {
    long i = 0;
    while (i < n) {
        switch (c->state) {
        case S_HEAD: {
            while (i < n && c->state == S_HEAD) {
                if (c->head_len < (int)sizeof(c->head) - 1) c->head[c->head_len++] = p[i];
                i++;
                if (c->head_len >= 4 && memcmp(c->head + c->head_len - 4, "\r\n\r\n", 4) == 0) {
                    c->head[c->head_len] = 0;
                    if (strncmp(c->head + 9, "200", 3) != 0) return -1;
                    c->chunked = strcasestr(c->head, "transfer-encoding: chunked") != NULL;
                    c->state = c->chunked ? S_CHUNK_SIZE : S_RAW;
                    ready_count++;
                }
            }
            break;
        }
        case S_CHUNK_SIZE:
            while (i < n && c->state == S_CHUNK_SIZE) {
                char ch = p[i++];
                if (ch == '\n') {
                    c->szline[c->sz_len] = 0;
                    c->chunk_left = strtol(c->szline, NULL, 16);
                    c->sz_len = 0;
                    if (c->chunk_left == 0) return -2; /* end of body */
                    c->state = S_CHUNK_DATA;
                } else if (ch != '\r' && c->sz_len < 63) {
                    c->szline[c->sz_len++] = ch;
                }
            }
            break;
        case S_CHUNK_DATA: {
            long take = n - i < c->chunk_left ? n - i : c->chunk_left;
            on_body(c, p + i, take);
            i += take;
            c->chunk_left -= take;
            if (c->chunk_left == 0) {
                c->state = S_CHUNK_CRLF;
                c->chunk_left = 2;
            }
            break;
        }
        case S_CHUNK_CRLF:
            while (i < n && c->chunk_left > 0) {
                i++;
                c->chunk_left--;
            }
            if (c->chunk_left == 0) c->state = S_CHUNK_SIZE;
            break;
        case S_RAW:
            on_body(c, p + i, n - i);
            i = n;
            break;
        default:
            return -1;
        }
    }
    return 0;
}

static int cmp_ll(const void *a, const void *b) {
    long long x = *(const long long *)a, y = *(const long long *)b;
    return (x > y) - (x < y);
}

static long long pct(double q) {
    if (hist_count == 0) return -1;
    long long target = (long long)(q * hist_count);
    if (target >= hist_count) target = hist_count - 1;
    long long seen = 0;
    for (long long b = 0; b < NBUCKETS; b++) {
        seen += hist[b];
        if (seen > target) return b * BUCKET_US + BUCKET_US / 2;
    }
    return hist_max_us;
}

int main(int argc, char **argv) {
    if (argc != 5 && argc != 6) {
        fprintf(stderr, "usage: %s HOST PORT PATH N [STALL]\n", argv[0]);
        return 2;
    }
    const char *host = argv[1];
    int port = atoi(argv[2]);
    const char *path = argv[3];
    nconns = atoi(argv[4]);
    nstall = argc == 6 ? atoi(argv[5]) : 0;
    (void)cmp_ll;

    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);

    conns = calloc(nconns, sizeof(conn_t));
    hist = calloc(NBUCKETS, sizeof(uint32_t));
    static char buf[RBUF];
    int epfd = epoll_create1(0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, host, &sa.sin_addr);
    const char *sep = strchr(path, '?') ? "&" : "?";

    int next_open = 0, connecting = 0, reported_ready = 0;
    double started = mono_s();
    double step_wall0 = 0, step_cpu0 = 0;
    epoll_ctl(epfd, EPOLL_CTL_ADD, 0, &(struct epoll_event){.events = EPOLLIN, .data.u64 = (uint64_t)-1});
    char cmd[256];
    int cmd_len = 0;
    struct epoll_event evs[1024];

    for (;;) {
        while (next_open < nconns && connecting < MAX_CONNECTING) {
            conn_t *c = &conns[next_open];
            c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
            c->last_seq = -1;
            if (c->fd < 0) {
                c->state = S_DEAD;
                failed_count++;
                next_open++;
                continue;
            }
            int one = 1;
            setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            if (next_open < nstall) {
                int small = 4096; /* before connect(), so the window stays small */
                c->stall = 1;
                setsockopt(c->fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
            }
            connect(c->fd, (struct sockaddr *)&sa, sizeof sa);
            c->state = S_CONNECTING;
            epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd,
                      &(struct epoll_event){.events = EPOLLOUT | EPOLLIN, .data.u64 = next_open});
            next_open++;
            connecting++;
        }
        if (!reported_ready && ready_count + failed_count >= nconns) {
            printf("{\"ready\":%d,\"failed\":%d,\"seconds\":%.3f}\n", ready_count, failed_count,
                   mono_s() - started);
            fflush(stdout);
            reported_ready = 1;
        }
        int n = epoll_wait(epfd, evs, 1024, 1000);
        for (int k = 0; k < n; k++) {
            uint64_t id = evs[k].data.u64;
            if (id == (uint64_t)-1) {
                long r = read(0, cmd + cmd_len, sizeof cmd - 1 - cmd_len);
                if (r <= 0) goto quit;
                cmd_len += r;
                cmd[cmd_len] = 0;
                char *nl;
                while ((nl = strchr(cmd, '\n'))) {
                    *nl = 0;
                    long long arg = 0;
                    if (sscanf(cmd, "START %lld", &arg) == 1) {
                        step_first = arg;
                        in_step = 1;
                        recv_in_step = gaps = reorder = late = hist_count = hist_max_us = 0;
                        memset(hist, 0, NBUCKETS * sizeof(uint32_t));
                        for (int i = 0; i < nconns; i++)
                            if (conns[i].last_seq < arg - 1) conns[i].last_seq = arg - 1;
                        step_wall0 = mono_s();
                        step_cpu0 = cpu_s();
                    } else if (sscanf(cmd, "STOP %lld", &arg) == 1) {
                        step_last = arg;
                        in_step = 0;
                        double wall = mono_s() - step_wall0, cpu = cpu_s() - step_cpu0;
                        int alive = 0;
                        for (int i = 0; i < nconns; i++)
                            alive += conns[i].state != S_DEAD && !conns[i].stall;
                        printf("{\"received\":%lld,\"expected\":%lld,\"gaps\":%lld,\"reorder\":%lld,"
                               "\"late\":%lld,\"alive\":%d,\"p50_us\":%lld,\"p99_us\":%lld,"
                               "\"p999_us\":%lld,\"max_us\":%lld,\"cpu_s\":%.4f,\"wall_s\":%.4f,"
                               "\"bytes\":%lld}\n",
                               recv_in_step, (step_last - step_first + 1) * (long long)alive, gaps,
                               reorder, late, alive, pct(0.5), pct(0.99), pct(0.999), hist_max_us,
                               cpu, wall, bytes_in);
                        fflush(stdout);
                    } else if (strncmp(cmd, "QUIT", 4) == 0) {
                        goto quit;
                    }
                    memmove(cmd, nl + 1, cmd_len - (nl + 1 - cmd) + 1);
                    cmd_len -= nl + 1 - cmd;
                }
                continue;
            }
            conn_t *c = &conns[id];
            if (c->state == S_DEAD) continue;
            if (c->state == S_CONNECTING) {
                if (evs[k].events & (EPOLLERR | EPOLLHUP)) {
                    connecting--;
                    kill_conn(epfd, c);
                    continue;
                }
                char req[512];
                int len = snprintf(req, sizeof req,
                                   "GET %s%scid=c%d HTTP/1.1\r\nHost: %s:%d\r\n"
                                   "Accept: text/event-stream\r\n\r\n",
                                   path, sep, (int)id, host, port);
                if (write(c->fd, req, len) != len) {
                    connecting--;
                    kill_conn(epfd, c);
                    continue;
                }
                c->state = S_HEAD;
                connecting--;
                epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd,
                          &(struct epoll_event){.events = EPOLLIN, .data.u64 = id});
                continue;
            }
            for (;;) {
                long r = read(c->fd, buf, RBUF);
                if (r > 0) {
                    bytes_in += r;
                    if (feed(c, buf, r) < 0) {
                        kill_conn(epfd, c);
                        break;
                    }
                    if (c->stall && c->state != S_HEAD) { /* headers in: stop reading */
                        epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
                        break;
                    }
                    if (r < RBUF) break;
                } else if (r == 0 || (errno != EAGAIN && errno != EINTR)) {
                    kill_conn(epfd, c);
                    break;
                } else {
                    break;
                }
            }
        }
    }
quit:
    for (int i = 0; i < nconns; i++)
        if (conns[i].state != S_DEAD) close(conns[i].fd);
    return 0;
}
