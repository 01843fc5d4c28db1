# Install Eddy as a systemd service.
#
# Included by the root Makefile (`include systemd/install.mk`):
#   make install                         # build, then install under /usr/local
#   make install DESTDIR=/tmp/stage PREFIX=/usr
#   make uninstall
# It also works on its own with a binary built elsewhere:
#   make -f systemd/install.mk install EDDY_INSTALL_DEPS= BIN=/path/to/eddy
#
# Layout (DESTDIR is prepended to every path):
#   $(PREFIX)/bin/eddy                        the binary
#   /usr/lib/systemd/system/eddy.{service,socket}
#   /usr/lib/sysusers.d/eddy.conf             the eddy user and group
#   /usr/lib/tmpfiles.d/eddy.conf             /var/lib/eddy, /etc/eddy, /var/log/eddy
#   /usr/lib/sysctl.d/60-eddy.conf            8 MiB UDP buffers for QUIC
#   /etc/eddy/eddy.toml                       the default config, never overwritten
# The unit's ExecStart names $(PREFIX)/bin/eddy. After a real install, see
# systemd/README.md for the commands that activate it.

# Where this file and the repository are, whatever the current directory.
EDDY_SYSTEMD_DIR := $(patsubst %/,%,$(dir $(lastword $(MAKEFILE_LIST))))
EDDY_SRC_DIR     := $(patsubst %/,%,$(dir $(EDDY_SYSTEMD_DIR)))

DESTDIR           ?=
PREFIX            ?= /usr/local
BIN               ?= bin/eddy
EDDY_INSTALL_DEPS ?= build
EDDY_UNITDIR      ?= /usr/lib/systemd/system
EDDY_SYSUSERSDIR  ?= /usr/lib/sysusers.d
EDDY_TMPFILESDIR  ?= /usr/lib/tmpfiles.d
EDDY_SYSCTLDIR    ?= /usr/lib/sysctl.d
EDDY_CONFDIR      ?= /etc/eddy
EDDY_DEFAULT_CONF := $(EDDY_SRC_DIR)/appliance/config/default.toml
INSTALL           ?= install

.PHONY: install uninstall

install: $(EDDY_INSTALL_DEPS)
	@test -x '$(BIN)' || { echo "install: $(BIN) is not an executable; run make build or set BIN=" >&2; exit 1; }
	$(INSTALL) -d '$(DESTDIR)$(PREFIX)/bin' '$(DESTDIR)$(EDDY_UNITDIR)' '$(DESTDIR)$(EDDY_SYSUSERSDIR)' \
		'$(DESTDIR)$(EDDY_TMPFILESDIR)' '$(DESTDIR)$(EDDY_SYSCTLDIR)' '$(DESTDIR)$(EDDY_CONFDIR)'
	$(INSTALL) -m 0755 '$(BIN)' '$(DESTDIR)$(PREFIX)/bin/eddy.new'
	mv -f '$(DESTDIR)$(PREFIX)/bin/eddy.new' '$(DESTDIR)$(PREFIX)/bin/eddy'
	sed 's|/usr/bin/eddy |$(PREFIX)/bin/eddy |' '$(EDDY_SYSTEMD_DIR)/eddy.service' > '$(DESTDIR)$(EDDY_UNITDIR)/eddy.service.new'
	chmod 0644 '$(DESTDIR)$(EDDY_UNITDIR)/eddy.service.new'
	mv -f '$(DESTDIR)$(EDDY_UNITDIR)/eddy.service.new' '$(DESTDIR)$(EDDY_UNITDIR)/eddy.service'
	$(INSTALL) -m 0644 '$(EDDY_SYSTEMD_DIR)/eddy.socket' '$(DESTDIR)$(EDDY_UNITDIR)/eddy.socket'
	$(INSTALL) -m 0644 '$(EDDY_SYSTEMD_DIR)/sysusers.d/eddy.conf' '$(DESTDIR)$(EDDY_SYSUSERSDIR)/eddy.conf'
	$(INSTALL) -m 0644 '$(EDDY_SYSTEMD_DIR)/tmpfiles.d/eddy.conf' '$(DESTDIR)$(EDDY_TMPFILESDIR)/eddy.conf'
	$(INSTALL) -m 0644 '$(EDDY_SYSTEMD_DIR)/sysctl.d/60-eddy.conf' '$(DESTDIR)$(EDDY_SYSCTLDIR)/60-eddy.conf'
	@if [ -e '$(DESTDIR)$(EDDY_CONFDIR)/eddy.toml' ]; then \
		echo "keeping existing $(DESTDIR)$(EDDY_CONFDIR)/eddy.toml"; \
	else \
		echo "$(INSTALL) -m 0644 $(EDDY_DEFAULT_CONF) $(DESTDIR)$(EDDY_CONFDIR)/eddy.toml"; \
		$(INSTALL) -m 0644 '$(EDDY_DEFAULT_CONF)' '$(DESTDIR)$(EDDY_CONFDIR)/eddy.toml'; \
	fi

# Removes what install put in place except /etc/eddy/eddy.toml when it was
# changed, and never the data in /var/lib/eddy.
uninstall:
	rm -f '$(DESTDIR)$(PREFIX)/bin/eddy' \
		'$(DESTDIR)$(EDDY_UNITDIR)/eddy.service' '$(DESTDIR)$(EDDY_UNITDIR)/eddy.socket' \
		'$(DESTDIR)$(EDDY_SYSUSERSDIR)/eddy.conf' '$(DESTDIR)$(EDDY_TMPFILESDIR)/eddy.conf' \
		'$(DESTDIR)$(EDDY_SYSCTLDIR)/60-eddy.conf'
	@if cmp -s '$(EDDY_DEFAULT_CONF)' '$(DESTDIR)$(EDDY_CONFDIR)/eddy.toml'; then \
		rm -f '$(DESTDIR)$(EDDY_CONFDIR)/eddy.toml'; \
		rmdir '$(DESTDIR)$(EDDY_CONFDIR)' 2>/dev/null || true; \
	elif [ -e '$(DESTDIR)$(EDDY_CONFDIR)/eddy.toml' ]; then \
		echo "keeping changed $(DESTDIR)$(EDDY_CONFDIR)/eddy.toml"; \
	fi
