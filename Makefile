# ferry — make targets. `make test` is the command CI runs (see README).
GO      ?= go
BIN     ?= bin/ferry
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)

.PHONY: build test bench fmt vet run serve clean

build:
	$(GO) build -ldflags "-X main.version=$(VERSION)" -o $(BIN) ./cmd/ferry

test:
	$(GO) vet ./...
	$(GO) test -count=1 ./...

# Benchmarks print records/s and peak RSS; see README "Performance".
bench:
	$(GO) run ./cmd/ferrybench
	$(GO) test -run '^$$' -bench . -benchmem ./engine/... ./connectors/...
	$(GO) test -run '^$$' -bench WebhookIngest -benchtime 3s ./apiserver/
	$(GO) test -run '^$$' -bench SmallRun -benchtime 3s ./runtime/
	$(GO) run ./cmd/ferrybench -load 120s -load-retention 20s

# Runs every fuzz target for FUZZTIME (default 10s) each; see .ci/fuzz.
.PHONY: fuzz
fuzz:
	GO=$(GO) ./.ci/fuzz

fmt:
	gofmt -w .

vet:
	$(GO) vet ./...

# Runs the quickstart integration locally (no network, no setup).
run:
	$(GO) run ./cmd/ferry run examples/quickstart

# Serves the quickstart: API, runtime and embedded NATS; prints an API key.
serve:
	$(GO) run ./cmd/ferry serve --dev examples/quickstart

clean:
	rm -rf bin examples/quickstart/out examples/quickstart/.ferry .ferry-server
