/* The floor: a trivial NSS hosts module (service "floor") that answers every name with one
 * constant IPv4 address, doing nothing else. What glibc's dispatch costs on its own; the bench
 * compares libnss_ec2 against it. Built by bench/run as libnss_floor.so.2. Never installed. */
#define _GNU_SOURCE
#include <errno.h>
#include <netdb.h>
#include <nss.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>

static const unsigned char ADDR[4] = {10, 0, 0, 1};

enum nss_status _nss_floor_gethostbyname4_r(const char *name, struct gaih_addrtuple **pat,
        char *buffer, size_t buflen, int *errnop, int *h_errnop, int32_t *ttlp) {
    uintptr_t pad = -(uintptr_t)buffer % __alignof__(struct gaih_addrtuple);
    size_t n = strlen(name) + 1;
    if (buflen < pad + sizeof(struct gaih_addrtuple) + n) {
        *errnop = ERANGE; *h_errnop = NETDB_INTERNAL; return NSS_STATUS_TRYAGAIN;
    }
    struct gaih_addrtuple *t = (struct gaih_addrtuple *)(buffer + pad);
    char *s = (char *)(t + 1);
    memcpy(s, name, n);
    memset(t, 0, sizeof *t);
    t->name = s; t->family = AF_INET; memcpy(t->addr, ADDR, 4);
    if (*pat) **pat = *t; else *pat = t;
    if (ttlp) *ttlp = 0;
    return NSS_STATUS_SUCCESS;
}

enum nss_status _nss_floor_gethostbyname3_r(const char *name, int af, struct hostent *result,
        char *buffer, size_t buflen, int *errnop, int *h_errnop, int32_t *ttlp, char **canonp) {
    if (af != AF_INET) { *errnop = ENOENT; *h_errnop = NO_DATA; return NSS_STATUS_NOTFOUND; }
    uintptr_t pad = -(uintptr_t)buffer % sizeof(char *);
    size_t n = strlen(name) + 1;
    if (buflen < pad + 4 * sizeof(char *) + 4 + n) {
        *errnop = ERANGE; *h_errnop = NETDB_INTERNAL; return NSS_STATUS_TRYAGAIN;
    }
    char **arr = (char **)(buffer + pad);
    char *a = (char *)(arr + 4), *s = a + 4;
    memcpy(a, ADDR, 4); memcpy(s, name, n);
    arr[0] = NULL; arr[1] = a; arr[2] = NULL;
    result->h_name = s; result->h_aliases = arr; result->h_addrtype = AF_INET;
    result->h_length = 4; result->h_addr_list = arr + 1;
    if (ttlp) *ttlp = 0;
    if (canonp) *canonp = s;
    return NSS_STATUS_SUCCESS;
}

enum nss_status _nss_floor_gethostbyname2_r(const char *name, int af, struct hostent *result,
        char *buffer, size_t buflen, int *errnop, int *h_errnop) {
    return _nss_floor_gethostbyname3_r(name, af, result, buffer, buflen, errnop, h_errnop, NULL, NULL);
}
