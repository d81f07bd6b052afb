/* Resolves NAME through the ec2 NSS module only and prints the first IPv4 address.
 * Built with an absolute DT_RPATH to the staged module, so that even a set-uid copy (for which
 * ld.so ignores LD_LIBRARY_PATH) loads the module under test. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>

extern int __nss_configure_lookup(const char *db, const char *service_line);

int main(int argc, char **argv) {
    if (argc != 2 || __nss_configure_lookup("hosts", "ec2") != 0) return 2;
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_INET;
    int rc = getaddrinfo(argv[1], NULL, &hints, &res);
    if (rc != 0) {
        printf("error %d\n", rc);
        return 1;
    }
    char buf[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &((struct sockaddr_in *)res->ai_addr)->sin_addr, buf, sizeof buf);
    printf("%s\n", buf);
    freeaddrinfo(res);
    return 0;
}
