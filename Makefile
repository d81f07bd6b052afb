# Build and install nss-ec2 without the Debian packages (the packages use the same targets).
#   make                    build the workspace (release) and the man pages
#   make install            install to the same places as the packages (DESTDIR, PREFIX honoured)
#   make nsswitch-add       add "ec2 [NOTFOUND=return]" before dns on the hosts: line
#   make nsswitch-remove    take it out again
#   make uninstall          remove what install installed (keeps /etc/ec2cached.toml and the state)
#   make bench              bench/run: the benchmark, written to docs/benchmarks.md (root)
PREFIX ?= /usr
SYSCONFDIR ?= /etc
# The multiarch lib dir (x86_64-linux-gnu, aarch64-linux-gnu, ...): dpkg's name for the host,
# else the compiler's. Where neither has one (Fedora, ...), LIBDIR is the directory of the
# system's libc.so.6 (e.g. /usr/lib64), where glibc looks for NSS modules; or set LIBDIR.
MULTIARCH ?= $(shell dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || gcc -print-multiarch 2>/dev/null)
LIBDIR ?= $(if $(MULTIARCH),$(PREFIX)/lib/$(MULTIARCH),$(patsubst %/,%,$(dir $(realpath $(shell gcc -print-file-name=libc.so.6 2>/dev/null)))))
SBINDIR ?= $(PREFIX)/sbin
MANDIR ?= $(PREFIX)/share/man
DATADIR ?= $(PREFIX)/share
UNITDIR ?= $(PREFIX)/lib/systemd/system
# The Debian packages install the unit, the account and the state directory with debhelper.
INSTALL_SERVICE ?= 1
NSSWITCH ?= /etc/nsswitch.conf
CARGO ?= cargo
CARGO_TARGET_DIR ?= target
REL := $(CARGO_TARGET_DIR)/release
MAN := $(CARGO_TARGET_DIR)/man

.PHONY: all build man install uninstall nsswitch-add nsswitch-remove bench
all: build

bench:
	bench/run

build:
	$(CARGO) build --release --locked --workspace
	$(MAKE) man

man:
	mkdir -p $(MAN)
	help2man --section=8 --no-info --include=ec2cached/ec2cached.h2m \
		--output=$(MAN)/ec2cached.8 $(REL)/ec2cached
	python3 tools/md2man.py docs/libnss_ec2.md libnss_ec2 8 > $(MAN)/libnss_ec2.8
	echo '.so man8/libnss_ec2.8' > $(MAN)/nss-ec2.8

install:
	@test -n "$(LIBDIR)" || { echo "cannot tell where libc.so.6 lives: set LIBDIR" >&2; exit 1; }
	install -D -m 0644 $(REL)/libnss_ec2.so $(DESTDIR)$(LIBDIR)/libnss_ec2.so.2
	install -D -m 0755 $(REL)/ec2cached $(DESTDIR)$(SBINDIR)/ec2cached
	install -D -m 0644 $(MAN)/ec2cached.8 $(DESTDIR)$(MANDIR)/man8/ec2cached.8
	install -D -m 0644 $(MAN)/libnss_ec2.8 $(DESTDIR)$(MANDIR)/man8/libnss_ec2.8
	install -D -m 0644 $(MAN)/nss-ec2.8 $(DESTDIR)$(MANDIR)/man8/nss-ec2.8
	test -e $(DESTDIR)$(SYSCONFDIR)/ec2cached.toml || \
		install -D -m 0644 ec2cached/ec2cached.toml $(DESTDIR)$(SYSCONFDIR)/ec2cached.toml
	# Facts for Facter and Ansible (their default directories), and the alert rules.
	install -d $(DESTDIR)$(SYSCONFDIR)/facter/facts.d $(DESTDIR)$(SYSCONFDIR)/ansible/facts.d
	# Like the packages' conffiles: one the admin removed or changed stays so.
	for f in facter/facts.d/ec2cached:facter ansible/facts.d/ec2cached.fact:ansible.fact; do \
		dest=$(DESTDIR)$(SYSCONFDIR)/$${f%%:*}; \
		test -e $$dest || { sed 's|@SBINDIR@|$(SBINDIR)|' ec2cached/facts/$${f##*:} > $$dest && chmod 0755 $$dest; }; \
	done
	install -D -m 0644 ec2cached/ec2cached.rules.yml $(DESTDIR)$(DATADIR)/ec2cached/ec2cached.rules.yml
	# Routing only .ec2 to the DNS stub: examples, enabled by copying (README "DNS").
	install -D -m 0644 ec2cached/dns/resolved-ec2.conf $(DESTDIR)$(DATADIR)/ec2cached/resolved-ec2.conf
	install -D -m 0644 ec2cached/dns/dnsmasq-ec2.conf $(DESTDIR)$(DATADIR)/ec2cached/dnsmasq-ec2.conf
	if [ "$(INSTALL_SERVICE)" = 1 ]; then \
		install -D -m 0644 debian/ec2cached.service $(DESTDIR)$(UNITDIR)/ec2cached.service; \
		install -D -m 0644 debian/ec2cached.ec2cached-dns.socket $(DESTDIR)$(UNITDIR)/ec2cached-dns.socket; \
		install -D -m 0644 debian/ec2cached.sysusers $(DESTDIR)$(PREFIX)/lib/sysusers.d/ec2cached.conf; \
		if [ -z "$(DESTDIR)" ]; then \
			systemd-sysusers ec2cached.conf 2>/dev/null || \
			getent passwd ec2cached >/dev/null || \
			useradd --system --user-group --home-dir /var/lib/ec2cached --shell /usr/sbin/nologin ec2cached; \
			install -d -o ec2cached -g ec2cached -m 0755 /var/lib/ec2cached; \
			ldconfig; \
		fi; \
	fi

uninstall:
	@test -n "$(LIBDIR)" || { echo "cannot tell where libc.so.6 lives: set LIBDIR" >&2; exit 1; }
	rm -f $(DESTDIR)$(LIBDIR)/libnss_ec2.so.2 $(DESTDIR)$(SBINDIR)/ec2cached \
		$(DESTDIR)$(MANDIR)/man8/ec2cached.8 $(DESTDIR)$(MANDIR)/man8/libnss_ec2.8 \
		$(DESTDIR)$(MANDIR)/man8/nss-ec2.8 $(DESTDIR)$(UNITDIR)/ec2cached.service \
		$(DESTDIR)$(PREFIX)/lib/sysusers.d/ec2cached.conf \
		$(DESTDIR)$(SYSCONFDIR)/facter/facts.d/ec2cached \
		$(DESTDIR)$(SYSCONFDIR)/ansible/facts.d/ec2cached.fact \
		$(DESTDIR)$(DATADIR)/ec2cached/ec2cached.rules.yml \
		$(DESTDIR)$(DATADIR)/ec2cached/resolved-ec2.conf \
		$(DESTDIR)$(DATADIR)/ec2cached/dnsmasq-ec2.conf \
		$(DESTDIR)$(UNITDIR)/ec2cached-dns.socket
	rmdir $(DESTDIR)$(DATADIR)/ec2cached 2>/dev/null || true

# The same edits as the Debian package's maintainer scripts (dh_installnss).
nsswitch-add:
	grep -qE '^hosts:[^#]*\sec2(\s|#|$$)' $(NSSWITCH) || \
		sed -E -i -e '/^hosts:\s[^#]*$$/ s/(\s)(dns(\s+\[[^]]+\])?|resolve(\s+\[[^]]+\])?)(\s|$$)/\1ec2 [NOTFOUND=return] \2 /' \
		-e 's/ $$//' $(NSSWITCH)

nsswitch-remove:
	sed -E -i -e '/^hosts:/ s/\s+ec2(\s+\[[^]]+\])?(\s|$$)/\2/' $(NSSWITCH)
