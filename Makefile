# netlab: build, test, bench. Kernel and end-to-end tests need root; they run in a
# throwaway network namespace and never touch the machine's own network.

GO      ?= go
BIN     ?= bin/netlab
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)

.PHONY: build test vet fmt-check bench soak clean

build:
	$(GO) build -ldflags "-X main.version=$(VERSION)" -o $(BIN) ./cmd/netlab

# Unit tests (parser goldens, plan goldens, random walk on the fake kernel), kernel
# tests and end-to-end tests of the built binary, plus formatting and vet.
test: fmt-check vet
	$(GO) test -count=1 -timeout 8m ./...

vet:
	$(GO) vet ./...

# netlab against iproute2 scripts (and Mininet, when installed) on stars of 10 to
# 10,000 namespaces, side by side in one run, in a throwaway network and mount
# namespace (root) but the machine's PID namespace, with 300 extra idle processes;
# netlab also in a fresh PID namespace. Medians, ratios, peak RSS and the targets,
# also as bench.json. Takes about 20 minutes; BENCH_FLAGS="-sizes 10,100,1000"
# for less.
bench: build
	$(GO) run ./tests/bench -netlab $(BIN) -json bench.json $(BENCH_FLAGS)

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

# The long runs: 400 up/down and up/edit/up cycles watching for growth of file
# descriptors, mounts, namespaces, goroutines and memory, and bounded fuzzing of
# the parser and validator (its corpus is topology/testdata/fuzz).
soak:
	NETLAB_SOAK=1 $(GO) test -count=1 -run TestSoak -v -timeout 20m ./reconcile/kernel
	$(GO) test -run '^$$' -fuzz FuzzParse -fuzztime 60s ./topology

clean:
	rm -rf bin
