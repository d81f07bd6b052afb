/* musllookup: resolves one name with musl's getaddrinfo (static: no NSS module can be loaded,
 * as in an Alpine container) and prints its addresses, one a line. musl's resolver reads
 * /etc/resolv.conf and asks for A and AAAA in parallel. Exit 2 with gai_strerror() on stderr
 * when the name does not resolve. Used by tests/e2e/test_dns.py. */
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

int main(int argc, char **argv)
{
    struct addrinfo hints, *res, *p;
    int e;

    if (argc != 2) {
        fputs("usage: musllookup NAME\n", stderr);
        return 64;
    }
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM; /* one entry per address */
    e = getaddrinfo(argv[1], NULL, &hints, &res);
    if (e != 0) {
        fprintf(stderr, "%s\n", gai_strerror(e));
        return 2;
    }
    for (p = res; p; p = p->ai_next) {
        char b[INET6_ADDRSTRLEN];
        const void *a = p->ai_family == AF_INET
                            ? (const void *)&((struct sockaddr_in *)p->ai_addr)->sin_addr
                            : (const void *)&((struct sockaddr_in6 *)p->ai_addr)->sin6_addr;
        if (!inet_ntop(p->ai_family, a, b, sizeof b))
            return 3;
        puts(b);
    }
    freeaddrinfo(res);
    return 0;
}
