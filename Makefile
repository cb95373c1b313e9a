# One command each for setup, format, lint, generate and test; CI (.ci/run)
# runs `make test`, exactly as a developer does.

GO        ?= go
BUF       ?= npx --yes @bufbuild/buf@1.75.0
GOBIN     := $(shell $(GO) env GOPATH)/bin
GRPCURL   := $(GOBIN)/grpcurl
export PATH := $(GOBIN):$(PATH)

.PHONY: all run build setup tools generate fmt verify verify-fmt verify-vet verify-staticcheck verify-generated lint test test-go test-clients bench clean

all: build

## run: start the daemon on its defaults (a 0600 Unix socket; see README)
run:
	$(GO) run ./cmd/streammgrd

build:
	$(GO) build ./...

## setup: install everything the tests need (grpcurl, example clients)
setup: tools
	./examples/setup.sh

tools: $(GRPCURL)

$(GRPCURL):
	$(GO) install github.com/fullstorydev/grpcurl/cmd/grpcurl@v1.9.4

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

verify-staticcheck:
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...

## verify-generated: api/ and the reflection descriptors must match proto/
verify-generated:
	@tmp=$$(mktemp -d); trap 'rm -rf $$tmp' EXIT; \
	$(BUF) generate -o $$tmp && diff -r api $$tmp/api && \
	$(BUF) build -o $$tmp/descriptors.binpb && cmp manager/descriptors.binpb $$tmp/descriptors.binpb && \
	echo "api/ and manager/descriptors.binpb are fresh"

## verify: every static check CI runs
verify: verify-fmt verify-vet verify-staticcheck lint verify-generated

## test: all checks and all tests (race detector on); what CI runs
test: setup verify test-go test-clients

## test-clients: the client packages' own suites against a real daemon
test-clients:
	./clients/node/run-tests.sh

test-go:
	$(GO) test -race -count=1 -timeout 20m ./...

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
	rm -rf examples/python/.venv examples/node/node_modules clients/node/node_modules
