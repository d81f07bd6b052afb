/* Times getaddrinfo through the real glibc NSS dispatch.
 *
 *   lookup SERVICES NAME ITERATIONS [unspec|inet] [warm]
 *
 * SERVICES is handed to __nss_configure_lookup("hosts", SERVICES) ("ec2", "files", "dns", ...);
 * "-" leaves the process on /etc/nsswitch.conf and lets glibc ask nscd first (a configured lookup
 * never consults nscd),
 * the family is AF_UNSPEC (default) or AF_INET. Prints one line:
 *   first_ns=<first call> p50_ns=<median> p99_ns=<99th percentile> rc=<getaddrinfo result>
 * Without "warm" the first call includes glibc's NSS start-up and loading the module. With
 * "warm", the module is dlopen()ed and glibc's resolver is warmed (a "files" lookup of localhost)
 * before the first call, which then measures only the module's own first use in a new process
 * (for libnss_ec2: opening, checking and mapping the snapshot, and faulting in its pages).
 */
#define _GNU_SOURCE
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <dlfcn.h>

extern int __nss_configure_lookup(const char *db, const char *service_line);

static long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int cmp(const void *a, const void *b) {
    long long x = *(const long long *)a, y = *(const long long *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: %s SERVICES NAME ITERATIONS [unspec|inet]\n", argv[0]);
        return 2;
    }
    if (argc > 5 && strcmp(argv[5], "warm") == 0) {
        char lib[256];
        char svc[64];
        sscanf(argv[1], "%63s", svc);
        snprintf(lib, sizeof lib, "libnss_%s.so.2", svc);
        if (!dlopen(lib, RTLD_NOW)) { fprintf(stderr, "cannot load %s\n", lib); return 2; }
        struct addrinfo *r = NULL;
        __nss_configure_lookup("hosts", "files");
        if (getaddrinfo("localhost", NULL, NULL, &r) == 0) freeaddrinfo(r);
    }
    if (strcmp(argv[1], "-") != 0 && __nss_configure_lookup("hosts", argv[1]) != 0) {
        fprintf(stderr, "bad service line\n");
        return 2;
    }
    const char *name = argv[2];
    long n = atol(argv[3]);
    if (n < 1 || n > 10000000) return 2;
    struct addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = (argc > 4 && strcmp(argv[4], "inet") == 0) ? AF_INET : AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    long long *t = malloc(sizeof *t * n);
    if (!t) return 2;
    int rc = 0;
    long long first = 0;
    for (long i = -1; i < n; i++) {
        struct addrinfo *res = NULL;
        long long s = now_ns();
        rc = getaddrinfo(name, NULL, &hints, &res);
        long long e = now_ns();
        if (res) freeaddrinfo(res);
        if (i < 0) first = e - s; else t[i] = e - s;
    }
    qsort(t, n, sizeof *t, cmp);
    printf("first_ns=%lld p50_ns=%lld p99_ns=%lld rc=%d\n", first, t[n / 2], t[(n * 99) / 100], rc);
    free(t);
    return 0;
}
