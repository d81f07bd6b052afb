# Build and install nss-ec2 without the Debian packages (the packages use the same targets).
#   make                    build the workspace (release) and the man pages
#   make install            install to the same places as the packages (DESTDIR, PREFIX honoured)
#   make nsswitch-add       add "ec2 [NOTFOUND=return]" before dns on the hosts: line
#   make nsswitch-remove    take it out again
#   make uninstall          remove what install installed (keeps /etc/ec2cached.toml and the state)
#   make bench              bench/run: the benchmark, written to docs/benchmarks.md (root)
#   make rpm                the RPMs nss-ec2 and ec2cached in $(CARGO_TARGET_DIR)/rpm (rpmbuild)
#   make dist               nss-ec2-VERSION-ARCH-linux-gnu.tar.gz in $(CARGO_TARGET_DIR)/dist
#
# The binaries are built against glibc $(GLIBC_FLOOR)'s symbol versions with cargo-zigbuild
# (`pip install cargo-zigbuild ziglang`), so that they run on every EC2 Linux (README "Supported
# systems"); RUST_TARGET (default: this machine's, x86_64 or aarch64) and GLIBC_FLOOR come from the
# environment too (NSS_EC2_TARGET, NSS_EC2_GLIBC). GLIBC_FLOOR= builds with plain cargo for this
# machine's glibc alone (into target/release). REL is where the binaries are packaged from.
PREFIX ?= /usr
SYSCONFDIR ?= /etc
# The multiarch lib dir (x86_64-linux-gnu, aarch64-linux-gnu, ...): dpkg's name for the host,
# else the compiler's. Where neither has one (Fedora, RHEL, a host without dpkg-dev or gcc),
# LIBDIR is the directory of the system's libc.so.6 as the loader's cache lists it (/usr/lib64,
# /usr/lib/x86_64-linux-gnu), where glibc looks for NSS modules; or set LIBDIR.
MULTIARCH ?= $(shell dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || gcc -print-multiarch 2>/dev/null)
LIBC_SO := $(shell /sbin/ldconfig -p 2>/dev/null | sed -n 's/^[[:space:]]*libc\.so\.6 .libc6,$(if $(filter aarch64,$(shell uname -m)),AArch64,x86-64).* => //p' | head -n1)
LIBDIR ?= $(if $(MULTIARCH),$(PREFIX)/lib/$(MULTIARCH),$(patsubst %/,%,$(dir $(realpath $(LIBC_SO)))))
SBINDIR ?= $(PREFIX)/sbin
MANDIR ?= $(PREFIX)/share/man
DATADIR ?= $(PREFIX)/share
UNITDIR ?= $(PREFIX)/lib/systemd/system
# The Debian packages install the unit, the account and the state directory with debhelper.
INSTALL_SERVICE ?= 1
NSSWITCH ?=
CARGO ?= cargo
CARGO_TARGET_DIR ?= target
RUST_TARGET ?= $(or $(NSS_EC2_TARGET),$(shell uname -m)-unknown-linux-gnu)
GLIBC_FLOOR ?= $(or $(NSS_EC2_GLIBC),2.28)
CARGO_ZIGBUILD ?= cargo-zigbuild
ifeq ($(GLIBC_FLOOR),)
CARGO_BUILD := $(CARGO) build
REL ?= $(CARGO_TARGET_DIR)/release
else
CARGO_BUILD := $(CARGO_ZIGBUILD) zigbuild --target $(RUST_TARGET).$(GLIBC_FLOOR)
REL ?= $(CARGO_TARGET_DIR)/$(RUST_TARGET)/release
endif
MAN ?= $(CARGO_TARGET_DIR)/man
VERSION ?= $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)

.PHONY: all build binaries man install uninstall nsswitch-add nsswitch-remove bench rpm dist
all: build

bench:
	bench/run

build:
	$(CARGO_BUILD) --release --locked --workspace
	$(MAKE) man

# The release binaries, built only if missing (the packages' rules: what tests/run built and
# tested is what ships), then checked: the daemon must be this version, and no binary may ask for
# a glibc above the floor. The man pages are made from the daemon (help2man runs it).
binaries:
	test -x $(REL)/ec2cached -a -f $(REL)/libnss_ec2.so || $(CARGO_BUILD) --release --locked --workspace
	test "$$($(REL)/ec2cached --version)" = "ec2cached $(VERSION)" || \
		{ echo "$(REL)/ec2cached is not version $(VERSION): make build" >&2; exit 1; }
	$(if $(GLIBC_FLOOR),python3 tools/glibc-floor --max $(GLIBC_FLOOR) $(REL)/ec2cached $(REL)/libnss_ec2.so)
	test -f $(MAN)/ec2cached.8 -a -f $(MAN)/libnss_ec2.8 || $(MAKE) man

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
	# Routing only .ec2 to the DNS stub: examples, enabled by copying (docs/dns.md).
	install -D -m 0644 ec2cached/dns/resolved-ec2.conf $(DESTDIR)$(DATADIR)/ec2cached/resolved-ec2.conf
	install -D -m 0644 ec2cached/dns/dnsmasq-ec2.conf $(DESTDIR)$(DATADIR)/ec2cached/dnsmasq-ec2.conf
	install -D -m 0644 ec2cached/dns/ec2.negative $(DESTDIR)$(DATADIR)/ec2cached/ec2.negative
	install -D -m 0644 deploy/ec2cached-events.yaml $(DESTDIR)$(DATADIR)/ec2cached/ec2cached-events.yaml
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

# The RPMs (rpm/nss-ec2.spec) of the release binaries, into $(CARGO_TARGET_DIR)/rpm/.
RPM_ARCH := $(firstword $(subst -, ,$(RUST_TARGET)))
# The RPMs' Release: raise it to rebuild one version as an upgrade.
RPM_RELEASE ?= 1
rpm: binaries
	rm -rf $(CARGO_TARGET_DIR)/rpmbuild
	rpmbuild -bb --quiet --target $(RPM_ARCH) \
		--define "_topdir $(abspath $(CARGO_TARGET_DIR))/rpmbuild" \
		--define "_rpmdir $(abspath $(CARGO_TARGET_DIR))/rpm" \
		--define "_build_name_fmt %%{NAME}-%%{VERSION}-%%{RELEASE}.%%{ARCH}.rpm" \
		--define "nss_ec2_src $(CURDIR)" --define "nss_ec2_rel $(abspath $(REL))" \
		--define "nss_ec2_man $(abspath $(MAN))" --define "version $(VERSION)" \
		--define "nss_ec2_release $(RPM_RELEASE)" \
		rpm/nss-ec2.spec
	@ls $(CARGO_TARGET_DIR)/rpm/*-$(VERSION)-$(RPM_RELEASE).$(RPM_ARCH).rpm

# The release archive for systems without either package: the binaries, man pages, config,
# units, facts and rules, with this Makefile to install them (README "Supported systems").
DIST_NAME := nss-ec2-$(VERSION)-$(RPM_ARCH)-linux-gnu
DIST_DIR := $(CARGO_TARGET_DIR)/dist
dist: binaries
	rm -rf $(DIST_DIR)/$(DIST_NAME)
	mkdir -p $(DIST_DIR)/$(DIST_NAME)/bin $(DIST_DIR)/$(DIST_NAME)/man
	install -m 0755 $(REL)/ec2cached $(DIST_DIR)/$(DIST_NAME)/bin/ec2cached
	install -m 0644 $(REL)/libnss_ec2.so $(DIST_DIR)/$(DIST_NAME)/bin/libnss_ec2.so
	install -m 0644 $(MAN)/ec2cached.8 $(MAN)/libnss_ec2.8 $(MAN)/nss-ec2.8 $(DIST_DIR)/$(DIST_NAME)/man/
	tar -cf - LICENSE-MIT LICENSE-APACHE ec2cached/ec2cached.toml ec2cached/ec2cached.rules.yml \
		ec2cached/facts ec2cached/dns/resolved-ec2.conf ec2cached/dns/dnsmasq-ec2.conf ec2cached/dns/ec2.negative \
		deploy/ec2cached-events.yaml \
		debian/ec2cached.service debian/ec2cached.ec2cached-dns.socket debian/ec2cached.sysusers \
		tools/nsswitch-ec2 | tar -C $(DIST_DIR)/$(DIST_NAME) -xf -
	install -m 0644 tools/dist-INSTALL $(DIST_DIR)/$(DIST_NAME)/INSTALL
	{ echo '# nss-ec2 release archive: the binaries are in bin/, the man pages in man/ (INSTALL).'; \
		echo '# `make` alone installs (as `make install`); nothing here is built.'; \
		echo 'REL ?= bin'; echo 'MAN ?= man'; echo 'VERSION ?= $(VERSION)'; \
		echo '.DEFAULT_GOAL := install'; cat Makefile; } \
		> $(DIST_DIR)/$(DIST_NAME)/Makefile
	tar -C $(DIST_DIR) --owner=0 --group=0 --sort=name -czf $(DIST_DIR)/$(DIST_NAME).tar.gz.tmp $(DIST_NAME)
	mv $(DIST_DIR)/$(DIST_NAME).tar.gz.tmp $(DIST_DIR)/$(DIST_NAME).tar.gz
	rm -rf $(DIST_DIR)/$(DIST_NAME)
	@echo $(DIST_DIR)/$(DIST_NAME).tar.gz

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
		$(DESTDIR)$(DATADIR)/ec2cached/ec2.negative \
		$(DESTDIR)$(DATADIR)/ec2cached/ec2cached-events.yaml \
		$(DESTDIR)$(UNITDIR)/ec2cached-dns.socket
	rmdir $(DESTDIR)$(DATADIR)/ec2cached 2>/dev/null || true

# The same edit as the packages' maintainer scripts (tools/nsswitch-ec2): on the hosts line,
# before dns or resolve; where authselect manages nsswitch.conf, in its user-nsswitch.conf,
# then `authselect apply-changes`. NSSWITCH=FILE edits that file alone.
nsswitch-add:
	sh tools/nsswitch-ec2 add $(NSSWITCH)

nsswitch-remove:
	sh tools/nsswitch-ec2 remove $(NSSWITCH)
