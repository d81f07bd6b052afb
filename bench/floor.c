/* The floor: a trivial NSS hosts module that answers every name with one constant address, doing
 * nothing else. What glibc's dispatch costs on its own; the bench compares libnss_ec2 against it.
 * Built by bench/run twice, never installed:
 *   libnss_floor.so.2      (service "floor")      answers at once;
 *   libnss_floorfile.so.2  (service "floorfile",  -DFLOOR_FILE) also does, on its first call in a
 *       process, the least any module that reads a file must do: open $NSS_EC2_SNAPSHOT, fstat it,
 *       mmap it, close it and read its first byte. Its first lookup is the floor for a new process's
 *       first lookup of any file-backed module. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <nss.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#ifdef FLOOR_FILE
#define FN(x) _nss_floorfile_##x
static const volatile unsigned char *mapped;

static void first_use(void) {
    if (mapped) return;
    const char *p = getenv("NSS_EC2_SNAPSHOT");
    int fd = p ? open(p, O_RDONLY | O_CLOEXEC) : -1;
    struct stat st;
    if (fd < 0) return;
    if (fstat(fd, &st) == 0 && st.st_size > 0) {
        void *m = mmap(NULL, st.st_size, PROT_READ, MAP_SHARED, fd, 0);
        if (m != MAP_FAILED) {
            mapped = m;
            (void)mapped[0];
        }
    }
    close(fd);
}
#else
#define FN(x) _nss_floor_##x
static void first_use(void) {}
#endif

static const unsigned char ADDR[4] = {10, 0, 0, 1};

enum nss_status FN(gethostbyname4_r)(const char *name, struct gaih_addrtuple **pat,
        char *buffer, size_t buflen, int *errnop, int *h_errnop, int32_t *ttlp) {
    first_use();
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

enum nss_status FN(gethostbyname3_r)(const char *name, int af, struct hostent *result,
        char *buffer, size_t buflen, int *errnop, int *h_errnop, int32_t *ttlp, char **canonp) {
    first_use();
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

enum nss_status FN(gethostbyname2_r)(const char *name, int af, struct hostent *result,
        char *buffer, size_t buflen, int *errnop, int *h_errnop) {
    return FN(gethostbyname3_r)(name, af, result, buffer, buflen, errnop, h_errnop, NULL, NULL);
}
