/* wdm-notify SOCKET JSON: send one JSON message to the FaaSLoad monitor's notification socket.
 *
 * Built static (make) so that it runs in any invoker image, Alpine included.  Never blocks
 * for long: connecting and writing give up 50 ms after the start; any failure exits 1 (the
 * wrappers ignore it: a missing monitor must never fail or slow the invoker).  With
 * FAASLOAD_NOTIFY_DEBUG set in the environment, the failing step is printed on stderr.
 *
 * A non-blocking connect() on a UNIX socket never completes later: EAGAIN means the
 * listener's backlog is full and nothing was queued, so the connect is retried (every
 * millisecond) until the deadline rather than waited for with poll(). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define TIMEOUT_MS 50

static long long now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int fail(const char *step) {
    if (getenv("FAASLOAD_NOTIFY_DEBUG") != NULL)
        fprintf(stderr, "wdm-notify: %s: %s\n", step, strerror(errno));
    return 1;
}

int main(int argc, char **argv) {
    struct sockaddr_un addr;
    struct pollfd pfd;
    size_t len, sent = 0;
    long long deadline = now_ms() + TIMEOUT_MS;
    int fd;

    if (argc != 3 || strlen(argv[1]) >= sizeof addr.sun_path)
        return 2;
    memset(&addr, 0, sizeof addr);
    addr.sun_family = AF_UNIX;
    strcpy(addr.sun_path, argv[1]);
    fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd < 0)
        return fail("socket");
    fcntl(fd, F_SETFL, O_NONBLOCK);
    while (connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0) {
        if ((errno != EAGAIN && errno != EINTR) || now_ms() >= deadline)
            return fail("connect");
        usleep(1000);
    }
    pfd.fd = fd;
    pfd.events = POLLOUT;
    len = strlen(argv[2]);
    while (sent < len) {
        ssize_t n = write(fd, argv[2] + sent, len - sent);
        if (n < 0) {
            long long left = deadline - now_ms();
            if ((errno != EAGAIN && errno != EINTR) || left <= 0 || poll(&pfd, 1, (int)left) < 0)
                return fail("write");
            continue;
        }
        sent += (size_t)n;
    }
    shutdown(fd, SHUT_WR);
    close(fd);
    return 0;
}
