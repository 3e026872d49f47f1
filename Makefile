# The two commands a newcomer needs: `make demo` and `make test`.
# Both run `make deps` first, which installs what is missing and says so.

GO        ?= go
BIN       := bin
BINARIES  := tester leaderboard orchestrator runner explorer-api
GOFLAGS_TEST ?= -race -count=1 -timeout 40m
# Embedded ClickHouse (chDB): chdb-go loads libchdb.so at run time from here;
# scripts/chdb.sh installs it from npm. Binaries and tests that use the
# embedded store are built with -tags chdb.
CHDB_LIB_PATH ?= $(CURDIR)/.cache/chdb/node_modules/@chdb/lib-linux-x64-gnu/libchdb.so
export CHDB_LIB_PATH
# go-nvml's cgo preamble includes nvml.h, whose DEPRECATED(13.0) markers make
# gcc print dozens of warnings on every cold build; they are NVIDIA's notices
# about functions we do not call, not faults in our code.
CGO_CFLAGS ?= -O2 -g -Wno-deprecated-declarations
export CGO_CFLAGS
TAGS      ?= chdb

.PHONY: fuzz all deps deps-demo build demo test test-gpu vet fmt-check test-go runner-image bench clean

all: build

deps:
	@scripts/deps.sh test
	@scripts/chdb.sh >/dev/null

deps-demo:
	@scripts/deps.sh demo
	@scripts/chdb.sh >/dev/null

build:
	@mkdir -p $(BIN)
	@echo "build: $(BINARIES) demo -> $(BIN)/"
	@for b in $(BINARIES) demo; do \
	  if [ -d cmd/$$b ]; then $(GO) build -tags '$(TAGS)' -o $(BIN)/$$b ./cmd/$$b || exit 1; fi; \
	done
	@CGO_ENABLED=0 $(GO) build -o $(BIN)/runner ./cmd/runner

# The main job: local ClickHouse, four reference orchestrators, two regional
# testers, the leaderboard; prints the ranked leaderboard after each round.
demo: deps-demo build
	@$(BIN)/demo -bin $(BIN) -dir .demo $(DEMO_FLAGS)

vet:
	$(GO) vet ./...
	$(GO) vet -tags '$(TAGS)' ./...
	$(GO) vet -tags gpu ./orchestrator/gpu/

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

test-go:
	$(GO) test -tags '$(TAGS)' $(GOFLAGS_TEST) ./...

# Every test: formatting, vet, and the race-enabled suite against the real
# ClickHouse server and Docker engine.
test: deps fmt-check vet test-go fuzz

# The real-GPU test, on a machine with an NVIDIA driver: lists the GPUs
# through NVML and fails when there are none. Not part of `make test` (CI has
# no GPU), so it is built only with the gpu tag rather than skipped.
test-gpu:
	$(GO) test -tags gpu -count=1 -v -run TestRealNVML ./orchestrator/gpu/

# Every fuzz target briefly (FUZZTIME each); what they find is committed as
# corpus files under the package's testdata/fuzz/ and replayed by test-go.
FUZZTIME ?= 5s
fuzz:
	@FUZZTIME=$(FUZZTIME) scripts/fuzz.sh

runner-image:
	@mkdir -p $(BIN)
	CGO_ENABLED=0 $(GO) build -o $(BIN)/runner ./cmd/runner
	DOCKER_BUILDKIT=0 docker build -q -t lpgauge/runner:dev -f orchestrator/runner/Dockerfile $(BIN)

bench:
	@scripts/bench.sh

clean:
	rm -rf $(BIN) .demo
