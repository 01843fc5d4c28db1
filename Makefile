# Eddy: build, run and test.
GO       ?= go
BIN      ?= bin/eddy
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT   ?= $(shell git rev-parse HEAD 2>/dev/null)
LDFLAGS  := -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT)
PKGS     := ./...
BENCH    ?= .
BENCHTIME ?= 1s

.PHONY: all build run test bench compare lint fmt clean

all: build

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/eddy

# A single-node broker on the embedded default config (data in ./eddy-data).
run: build
	./$(BIN) serve

# Every test, with the race detector, including the fuzz seed corpora.
# EDDY_CRASH_SEEDS raises the storage crash test's workloads (each visits
# every crash point); EDDY_CRASH_ROUNDS the kill -9 rounds of the binary.
test: lint
	$(GO) test -race -count=1 -timeout 20m $(PKGS)

# Storage, then the broker over TCP and QUIC; see docs/PERFORMANCE.md.
bench:
	$(GO) test -run '^$$' -bench '$(BENCH)' -benchtime $(BENCHTIME) ./appliance/storage/... ./appliance/node/

# make install / make uninstall (DESTDIR, PREFIX): systemd/install.mk.
include systemd/install.mk

# Eddy against NATS JetStream, the disk and the transports, with scale
# curves: writes docs/bench/compare.md and docs/bench/*.png (about 15
# minutes on 2 cores; not part of test). bench/ is a module of its own, so
# its dependencies stay out of go.mod; -mod=mod lets its go.sum follow the
# root module's. A short run of every part:
#   make compare COMPARE_FLAGS=-quick
COMPARE_FLAGS ?=
compare:
	cd bench && $(GO) run -mod=mod ./compare $(COMPARE_FLAGS)

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf bin
