/* wdm-notify SOCKET JSON: send one JSON message to the FaaSLoad monitor's notification socket.
 *
 * Built static (make) so that it runs in any invoker image, Alpine included.  Never blocks
 * for long: the connect and the write time out after 50 ms; any failure exits 1 silently
 * (the wrappers ignore it: a missing monitor must never fail or slow the invoker). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define TIMEOUT_MS 50

int main(int argc, char **argv) {
    struct sockaddr_un addr;
    struct pollfd pfd;
    size_t len, sent = 0;
    int fd, err = 0;
    socklen_t errlen = sizeof err;

    if (argc != 3 || strlen(argv[1]) >= sizeof addr.sun_path)
        return 2;
    memset(&addr, 0, sizeof addr);
    addr.sun_family = AF_UNIX;
    strcpy(addr.sun_path, argv[1]);
    fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd < 0)
        return 1;
    fcntl(fd, F_SETFL, O_NONBLOCK);
    pfd.fd = fd;
    pfd.events = POLLOUT;
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0) {
        if (errno != EINPROGRESS && errno != EAGAIN)
            return 1;
        if (poll(&pfd, 1, TIMEOUT_MS) != 1)
            return 1;
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &errlen) < 0 || err != 0)
            return 1;
    }
    len = strlen(argv[2]);
    while (sent < len) {
        ssize_t n = write(fd, argv[2] + sent, len - sent);
        if (n < 0) {
            if (errno != EAGAIN || poll(&pfd, 1, TIMEOUT_MS) != 1)
                return 1;
            continue;
        }
        sent += (size_t)n;
    }
    shutdown(fd, SHUT_WR);
    close(fd);
    return 0;
}
