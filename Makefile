# One command each for setup, format, lint, generate and test; CI (.ci/run)
# runs `make test`, exactly as a developer does.

SHELL     := bash
GO        ?= go
BUF       ?= npx --yes @bufbuild/buf@1.75.0
GOBIN     := $(shell $(GO) env GOPATH)/bin
GRPCURL   := $(GOBIN)/grpcurl
GOTESTSUM := $(GO) run gotest.tools/gotestsum@v1.13.0
# Each suite's output is kept here too, for the summary `make test` ends with.
TESTLOG   ?= $(CURDIR)/.testlog
export PATH := $(GOBIN):$(PATH)

.PHONY: all run build setup tools generate fmt verify verify-fmt verify-vet verify-staticcheck verify-generated lint test test-go test-clients test-node test-python test-summary bench clean

all: build

## run: start the daemon on its defaults (a 0600 Unix socket; see README)
run:
	$(GO) run ./cmd/streammgrd

build:
	$(GO) build ./...

## setup: install everything the tests need (grpcurl, example clients),
## quietly: `go mod download` says nothing, and go install's "downloading"
## lines are left out (its errors are not)
setup: tools
	$(GO) mod download
	cd examples/deploy && $(GO) mod download
	./examples/setup.sh

tools: $(GRPCURL)

$(GRPCURL):
	set -o pipefail; $(GO) install github.com/fullstorydev/grpcurl/cmd/grpcurl@v1.9.4 2>&1 | { grep -v '^go: downloading' || true; }

## generate: regenerate api/ from proto/ with local plugins
generate:
	$(BUF) generate
	$(BUF) build -o manager/descriptors.binpb

## fmt: format Go code
fmt:
	gofmt -w $$(git ls-files '*.go' | grep -v '^api/')

lint:
	$(BUF) lint

verify-fmt:
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '^api/')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

verify-vet:
	$(GO) vet ./...
	cd examples/deploy && $(GO) vet ./...

verify-staticcheck:
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...
	cd examples/deploy && $(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...

## verify-generated: api/ and the reflection descriptors must match proto/
verify-generated:
	@tmp=$$(mktemp -d); trap 'rm -rf $$tmp' EXIT; \
	$(BUF) generate -o $$tmp && diff -r api $$tmp/api && \
	$(BUF) build -o $$tmp/descriptors.binpb && cmp manager/descriptors.binpb $$tmp/descriptors.binpb && \
	echo "api/ and manager/descriptors.binpb are fresh"

## verify: every static check CI runs
verify: verify-fmt verify-vet verify-staticcheck lint verify-generated

## test: all checks and all tests (race detector on); what CI runs. It
## ends with the number of tests each suite ran.
test: setup verify
	@rm -rf $(TESTLOG); mkdir -p $(TESTLOG)
	$(MAKE) --no-print-directory test-go test-clients
	@$(MAKE) --no-print-directory test-summary

## test-go: every Go package's tests with the race detector (gotestsum
## prints failures in full and ends with the count)
test-go:
	@mkdir -p $(TESTLOG)
	set -o pipefail; $(GOTESTSUM) --format pkgname-and-test-fails --format-hide-empty-pkg \
		--jsonfile $(TESTLOG)/go.json -- -race -count=1 -timeout 20m ./... 2>&1 | tee $(TESTLOG)/go.log
	@# examples/deploy is a module of its own (Kubernetes's API types stay out of ours)
	set -o pipefail; cd examples/deploy && $(GOTESTSUM) --format pkgname-and-test-fails \
		-- -race -count=1 -timeout 10m ./... 2>&1 | tee $(TESTLOG)/deploy.log

## test-clients: the client packages' own suites against a real daemon
test-clients: test-node test-python

test-node:
	@mkdir -p $(TESTLOG)
	set -o pipefail; ./clients/node/run-tests.sh 2>&1 | tee $(TESTLOG)/node.log

test-python:
	@mkdir -p $(TESTLOG)
	set -o pipefail; ./clients/python/run-tests.sh 2>&1 | tee $(TESTLOG)/python.log

# test-summary: one line per suite, from the logs the suites left.
test-summary:
	@echo "== tests run"
	@printf '  go:     %s\n' "$$(grep -E '^DONE [0-9]+ tests' $(TESTLOG)/go.log | tail -1)"
	@printf '  deploy: %s\n' "$$(grep -E '^DONE [0-9]+ tests' $(TESTLOG)/deploy.log | tail -1)"
	@printf '  node:   %s\n' "$$(grep -E '^# (tests|pass|fail|skipped) ' $(TESTLOG)/node.log | tr '\n' ' ')"
	@printf '  python: %s\n' "$$(grep -E '[0-9]+ passed' $(TESTLOG)/python.log | tail -1)"

## bench: benchmarks against their baselines (bufio, bare net.Conn, direct
## TCP, bare gRPC), each group in one run; then one table of the daemon
## against CPython asyncio, bare gRPC, direct TCP and the baseline commit
## (STREAMMGR_BENCH_REPS, _ROUNDTRIPS, _BYTES, _BASELINE: see
## cmd/streammgrd/benchtable_test.go); then what idle streams cost the
## daemon against the baseline commit (STREAMMGR_BENCH_IDLE_*: see
## cmd/streammgrd/idle_bench_test.go)
bench:
	$(GO) test -run '^$$' -bench . -benchmem ./streamcore/
	$(GO) test -run '^$$' -bench 'Echo|OpenClose' -benchmem ./manager/
	STREAMMGR_BENCH=1 $(GO) test -run '^TestBenchTable$$' -count=1 -v -timeout 30m ./cmd/streammgrd/
	STREAMMGR_BENCH=1 $(GO) test -run '^TestIdleBench$$' -count=1 -v -timeout 30m ./cmd/streammgrd/

clean:
	rm -rf examples/python/.venv examples/node/node_modules clients/node/node_modules clients/python/.venv $(TESTLOG)
