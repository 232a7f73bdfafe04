GO ?= go
PKGS := ./...

.PHONY: all build run test fmt-check vet race allocs fuzz bench loadbench clean

all: build

build:
	$(GO) build -o bin/sessiongate ./cmd/sessiongate

# The gateway in front of two demo members on loopback: open http://127.0.0.1:8080/fb/
run:
	$(GO) run ./cmd/sessiongate demo

# What CI runs: formatting, vet, the race-enabled tests, then the allocation guards
# (built without -race, which changes allocation behaviour).
test: fmt-check vet race allocs

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet $(PKGS)

race:
	$(GO) test -race -count=1 -timeout 10m $(PKGS)

allocs:
	$(GO) test -count=1 -run Allocs -v $(PKGS)

# Short fuzzing of every parser (FUZZTIME each).
FUZZTIME ?= 20s
fuzz:
	@for pkg in ./router ./gateway; do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
	    echo "fuzz $$pkg $$f"; $(GO) test -run=NONE -fuzz="^$$f$$" -fuzztime=$(FUZZTIME) $$pkg || exit 1; \
	  done; \
	done

bench:
	$(GO) test -run=NONE -bench=. -benchmem $(PKGS)

# Direct, sessiongate and (when installed) HAProxy and NGINX in one run; see README "Performance".
loadbench:
	$(GO) run ./cmd/sessiongate bench -duration 10s -peers haproxy,nginx

clean:
	rm -rf bin
