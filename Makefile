GO ?= go
PKGS := ./...

# make install: DESTDIR stages the tree (packaging), PREFIX is where it will live. The
# unit file is installed with its /usr/local/ paths rewritten to PREFIX.
DESTDIR ?=
PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
DOCDIR ?= $(PREFIX)/share/doc/sessiongate
UNITDIR ?= /etc/systemd/system
IMAGE ?= sessiongate:latest

.PHONY: all build install docker run test fmt-check vet race race-epoll allocs fuzz bench loadbench bench-gate bench-tls clean

all: build

# A static binary (no cgo, so no libc to match on the target) with the VCS revision
# stamped in: -buildvcs=auto overrides a GOFLAGS=-buildvcs=false and still builds from
# a tree without git. `bin/sessiongate version` prints it.
build:
	CGO_ENABLED=0 $(GO) build -trimpath -buildvcs=auto -o bin/sessiongate ./cmd/sessiongate

# Installs bin/sessiongate (built first if missing; `make build && sudo make install`)
# where deploy/sessiongate.service runs it, the unit and the README it links to. The
# configuration, /etc/sessiongate/sessiongate.yaml, is left to the operator.
install:
	@test -x bin/sessiongate || $(MAKE) build
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(UNITDIR) $(DESTDIR)$(DOCDIR)
	install -m 0755 bin/sessiongate $(DESTDIR)$(BINDIR)/sessiongate
	sed -e 's|/usr/local/bin/|$(BINDIR)/|g' -e 's|/usr/local/share/doc/sessiongate/|$(DOCDIR)/|g' \
	  deploy/sessiongate.service > $(DESTDIR)$(UNITDIR)/sessiongate.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/sessiongate.service
	install -m 0644 README.md $(DESTDIR)$(DOCDIR)/README.md

# An image FROM scratch around the static binary: nothing to pull (see Dockerfile).
docker: build
	docker build -t $(IMAGE) .

# The gateway in front of two demo members on loopback: open http://127.0.0.1:8080/fb/
run:
	$(GO) run ./cmd/sessiongate demo

# What CI runs: formatting, vet, the race-enabled tests, the gateway's suite again on
# the epoll data path (every plain listener with dataplane: epoll), then the allocation
# guards (built without -race, which changes allocation behaviour).
test: fmt-check vet race race-epoll allocs

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet $(PKGS)

race:
	$(GO) test -race -count=1 -timeout 10m $(PKGS)

race-epoll:
	SESSIONGATE_TEST_DATAPLANE=epoll $(GO) test -race -count=1 -timeout 10m ./gateway/

allocs:
	$(GO) test -count=1 -run Allocs -v $(PKGS)

# Short fuzzing of every parser (FUZZTIME each).
FUZZTIME ?= 20s
fuzz:
	@for pkg in ./router ./config ./gateway; do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
	    echo "fuzz $$pkg $$f"; $(GO) test -run=NONE -fuzz="^$$f$$" -fuzztime=$(FUZZTIME) $$pkg || exit 1; \
	  done; \
	done

bench:
	$(GO) test -run=NONE -bench=. -benchmem $(PKGS)

# Direct, sessiongate and (when installed) HAProxy and NGINX in one run; see docs/performance.md.
loadbench:
	$(GO) run ./cmd/sessiongate bench -duration 10s -peers haproxy,nginx

# The TLS bench (docs/performance.md): sessiongate, HAProxy and NGINX terminating TLS 1.3,
# keep-alive HTTPS, one new handshake per request and HTTP/2 (4 connections x 16
# streams; -h2-conns, -h2-streams), in interleaved rounds; in the
# pinned layout of bench-gate when there are two CPUs and taskset. It reports the ratios
# to the best peer and fails only on errors or sticky violations (NGINX's excepted).
BENCH_TLS_ARGS ?= -rounds 3 -duration 4s -warmup 1s -sessions 2000 -conns 16
bench-tls: build
	@if [ "$$(nproc)" -ge 2 ] && command -v taskset >/dev/null 2>&1; then \
	  taskset -c 1 bin/sessiongate bench -tls $(BENCH_TLS_ARGS) -mode child -taskset 0 -peers haproxy,nginx; \
	else \
	  bin/sessiongate bench -tls $(BENCH_TLS_ARGS) -mode child -peers haproxy,nginx; \
	fi

clean:
	rm -rf bin

# The CI performance gate: a short load run, the gateway pinned alone on CPU 0 and the
# load generator and members on CPU 1 (when there are two CPUs and taskset). It fails on
# any error or sticky violation at once, and on a sessiongate/direct req/s ratio below
# the floor in three attempts in a row (exit status 3 means "only the ratio"). Each
# attempt interleaves two rounds of both phases, so a neighbour's burst falls on both.
# Measured in this layout on the 2-core machine: 0.68-0.71 in five runs; 0.55 and 0.59
# with a busy loop on the other core; 0.30 and 0.31 with a busy loop on the gateway's
# own core for the whole run (half a core: that fails, as it should). Single-round runs
# earlier gave 0.69-0.90, and 0.41-0.48 with a test or benchmark on the gateway's core;
# right after `make test` (as in .ci/run) the gateway's core runs slower for a while:
# 0.41, 0.43 and 0.49 there, 0.83 twenty seconds later. With the coarse deadlines,
# the one-pass hop-by-hop headers and the held answer (issue 14), three runs
# interleaved with the build before them: 0.86, 0.82 and 0.65 against 0.67, 0.73 and
# 0.44. The floor of 0.45 keeps the same share of margin (the dip right after
# `make test` took 40% off), and the attempts absorb such passing neighbours.
# Both data paths are held to the floor (-dataplane both): in this layout (16
# connections) the epoll path measured 0.70-0.88 beside 0.78 for fasthttp's on a busy
# machine, so the same floor keeps the same margin for either.
BENCH_FLOOR ?= 0.45
BENCH_ARGS = -duration 2s -warmup 1s -sessions 2000 -conns 16 -rounds 2 -dataplane both
bench-gate: build
	@if [ "$$(nproc)" -ge 2 ] && command -v taskset >/dev/null 2>&1; then \
	  run="taskset -c 1 bin/sessiongate bench $(BENCH_ARGS) -mode child -taskset 0 -min-ratio $(BENCH_FLOOR)"; \
	else \
	  run="bin/sessiongate bench $(BENCH_ARGS) -min-ratio 0.2"; \
	fi; \
	for attempt in 1 2 3; do \
	  $$run; rc=$$?; \
	  [ $$rc -ne 3 ] && exit $$rc; \
	  echo "bench gate: attempt $$attempt below the floor, measuring again"; \
	done; exit 1
