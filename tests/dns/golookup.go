// golookup: resolves one name with Go's own DNS resolver and prints its addresses, one a line.
// Built with CGO_ENABLED=0 (a static binary that never loads an NSS module), as Go programs on
// a fleet usually are: it reads /etc/resolv.conf and asks the name server there (A and AAAA in
// parallel). Exit 2 with Go's error on stderr ("no such host") when the name does not resolve.
// Used by tests/e2e/test_dns.py.
package main

import (
	"fmt"
	"net"
	"os"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: golookup NAME")
		os.Exit(64)
	}
	addrs, err := net.LookupHost(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	for _, a := range addrs {
		fmt.Println(a)
	}
}
