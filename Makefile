# The two set-up commands of the README: `make demo` and `make test`.
# Both install what they need on a fresh Debian 12 machine (apt packages as
# root, or through sudo) and build their own virtual environments.

PYTHON ?= python3
VENV := .venv
VENV_DEB12 := .venv-deb12
VENV_DEB13 := .venv-deb13
APT_PACKAGES := mosquitto mosquitto-clients libsystemd-dev pkg-config systemd man-db strace gcc libc6-dev \
	tinyproxy
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# The releases Debian ships of the libraries whose APIs gatewayd adapts: paho-mqtt
# 1.6.1, requests 2.28.1 and urllib3 1.26.12 in Debian 12; paho-mqtt 2.1.0,
# requests 2.32.3 and urllib3 2.3.0 in Debian 13 (the venv has the newest).
DEB12_PINS := paho-mqtt==1.6.1 requests==2.28.1 urllib3==1.26.12
DEB13_PINS := paho-mqtt==2.1.0 requests==2.32.3 urllib3==2.3.0

.PHONY: all deps newer-mosquitto libwebsockets17 venv test lint typecheck pytest pytest-deb12 pytest-deb13 demo man deb deb-check \
	readme-table \
	bench clean

all: test

# apt-get install what of $(1) is not installed yet.
define apt_ensure
	@missing=""; for p in $(1); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -q && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	fi
endef

deps:
	$(call apt_ensure,$(APT_PACKAGES))

$(VENV)/.stamp: pyproject.toml | deps
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[test]'
	touch $@

$(VENV_DEB12)/.stamp: pyproject.toml | deps
	$(PYTHON) -m venv $(VENV_DEB12)
	$(VENV_DEB12)/bin/pip install -q --upgrade pip
	$(VENV_DEB12)/bin/pip install -q -e '.[test]' $(DEB12_PINS)
	touch $@

$(VENV_DEB13)/.stamp: pyproject.toml | deps
	$(PYTHON) -m venv $(VENV_DEB13)
	$(VENV_DEB13)/bin/pip install -q --upgrade pip
	$(VENV_DEB13)/bin/pip install -q -e '.[test]' $(DEB13_PINS)
	touch $@

venv: $(VENV)/.stamp

lint: $(VENV)/.stamp
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports --no-cache

typecheck: $(VENV)/.stamp
	$(VENV)/bin/mypy

pytest: $(VENV)/.stamp newer-mosquitto
	$(VENV)/bin/python -c $(VERSIONS)
	$(VENV)/bin/pytest

# Debian 13's mosquitto (2.0.21) on Debian 12, whose own is 2.0.11: since 2.0.16 mosquitto
# drops any packet for a client whose queue is full, acknowledgements included, and
# tests/test_flood.py floods gatewayd on the newest broker at hand. The package comes from
# bookworm-backports through the machine's own Debian sources (the suite changed), with apt
# lists of its own under build/apt; it is unpacked into build/mosquitto, not installed.
NEWER_MOSQUITTO := build/mosquitto/usr/sbin/mosquitto
APT_BPO := -o Dir::Etc::sourcelist=/dev/null -o Dir::Etc::sourceparts=$(CURDIR)/build/apt/sources \
	-o Dir::State::Lists=$(CURDIR)/build/apt/lists -o Dir::Cache=$(CURDIR)/build/apt/cache

newer-mosquitto: | deps
	@if dpkg --compare-versions "$$(dpkg-query -W -f='$${Version}' mosquitto)" ge 2.0.16 \
	  || [ -x $(NEWER_MOSQUITTO) ] || [ "$$(. /etc/os-release; echo $$VERSION_CODENAME)" != bookworm ]; \
	then exit 0; fi; \
	set -e; \
	$(MAKE) --no-print-directory libwebsockets17; \
	rm -rf build/apt && mkdir -p build/apt/sources build/apt/lists/partial build/apt/cache/archives/partial; \
	if [ -f /etc/apt/sources.list.d/debian.sources ]; then \
	  awk -v RS= -v ORS='\n\n' '!/security/' /etc/apt/sources.list.d/debian.sources \
	    | sed -e 's/^Suites:.*/Suites: bookworm-backports/' > build/apt/sources/backports.sources; \
	else \
	  grep -E '^deb .* bookworm main' /etc/apt/sources.list | sed -e 's/ bookworm main/ bookworm-backports main/' \
	    > build/apt/sources/backports.list; \
	fi; \
	$(SUDO) apt-get $(APT_BPO) update -q; \
	cd build/apt && $(SUDO) apt-get $(APT_BPO) download -q mosquitto/bookworm-backports && cd ../..; \
	dpkg-deb -x build/apt/mosquitto_*.deb build/mosquitto; \
	$(NEWER_MOSQUITTO) -h | head -1

libwebsockets17:
	$(call apt_ensure,libwebsockets17)

# The broker, HTTP and end-to-end tests again, on Debian 12's and Debian 13's
# libraries (the slow fault tests run once, above).
VERSIONS := 'import paho.mqtt, requests, urllib3; \
	print("paho-mqtt", paho.mqtt.__version__, "requests", requests.__version__, "urllib3", urllib3.__version__)'

pytest-deb12: $(VENV_DEB12)/.stamp
	$(VENV_DEB12)/bin/python -c $(VERSIONS)
	$(VENV_DEB12)/bin/pytest -m '(mqtt or http or e2e) and not slow'

pytest-deb13: $(VENV_DEB13)/.stamp
	$(VENV_DEB13)/bin/python -c $(VERSIONS)
	$(VENV_DEB13)/bin/pytest -m '(mqtt or http or e2e) and not slow'

test: lint typecheck pytest pytest-deb12 pytest-deb13 deb-check

# The README's copy of the node state machine's table, rewritten from gatewayd/core/transitions.py.
readme-table: $(VENV)/.stamp
	$(VENV)/bin/python tests/readme_table.py

demo: $(VENV)/.stamp
	$(VENV)/bin/python -m gatewayd.sim.demo

# The benchmarks (a few minutes); they rewrite bench/RESULTS.md. Debian's python3 with the
# .deb's dependencies is measured too, as a gateway runs it.
BENCH_APT_PACKAGES := python3-paho-mqtt python3-keyring python3-cryptography python3-requests \
	python3-systemd
bench: $(VENV)/.stamp
	$(call apt_ensure,$(BENCH_APT_PACKAGES))
	$(VENV)/bin/python bench/run.py

# The man pages, from their reStructuredText sources in man/, into build/man/.
MAN_PAGES := $(patsubst man/%.rst,build/man/%,$(wildcard man/*.[0-9].rst))

man: $(MAN_PAGES)

build/man/%: man/%.rst man/render.py | $(VENV)/.stamp
	@mkdir -p build/man
	$(VENV)/bin/python man/render.py $< $@

# The Debian package, built with Debian's own Python and tools (never a venv's).
DEB_APT_PACKAGES := debhelper dh-python pybuild-plugin-pyproject python3-all python3-docutils \
	python3-setuptools lintian debootstrap systemd-container
DEB_PATH := /usr/sbin:/usr/bin:/sbin:/bin
VERSION := $(shell awk -F'[()]' 'NR == 1 {print $$2}' debian/changelog)
DEB := dist/gatewayd_$(VERSION)_all.deb

deb:
	$(call apt_ensure,$(DEB_APT_PACKAGES))
	rm -f ../gatewayd_$(VERSION)_* dist/gatewayd_$(VERSION)_*
	env PATH=$(DEB_PATH) dpkg-buildpackage -us -uc -b
	mkdir -p dist
	mv ../gatewayd_$(VERSION)_all.deb ../gatewayd_$(VERSION)_*.buildinfo \
	  ../gatewayd_$(VERSION)_*.changes dist/
	@echo "built $(DEB)"

# lintian, then the package installed on clean Debian 12 and 13 roots (tests/test_deb.py), and
# those roots booted under systemd-nspawn (tests/test_boot.py).
deb-check: deb $(VENV)/.stamp
	lintian --pedantic --display-info --fail-on error,warning $(DEB) dist/gatewayd_$(VERSION)_*.changes
	@echo "lintian --pedantic: no error, no warning"
	$(SUDO) env GATEWAYD_DEB=$(DEB) $(VENV)/bin/pytest -m deb -s tests/test_deb.py tests/test_boot.py

clean:
	rm -rf $(VENV) $(VENV_DEB12) $(VENV_DEB13) build dist .mypy_cache .ruff_cache .pytest_cache *.egg-info
