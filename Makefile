# volleyscope — make help lists the targets.
GO      ?= go
BIN     ?= volleyscope
PKGS    := ./...
CC      ?= gcc

.PHONY: help build generate test test-short bench lint clean vmtest

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

build: ## build ./volleyscope (no clang needed: eBPF objects are committed)
	$(GO) build -buildvcs=auto -o $(BIN) ./cmd/volleyscope

generate: ## regenerate bpf/*_bpfel.{go,o} from the C sources (needs clang, libbpf-dev)
	$(GO) generate ./bpf/ ./internal/delay/

# The kernel-test packages are those whose tests import internal/testenv:
# they run after the others and one at a time, so that no unit test's load
# is in their timing (testenv's flock also keeps them apart from another
# 'make test' running beside).
KERNEL_PKGS = $(GO) list -f '{{.ImportPath}} {{join .TestImports " "}} {{join .XTestImports " "}}' $(PKGS) | awk '{ for (i = 2; i <= NF; i++) if ($$i ~ /\/internal\/testenv$$/) { print $$1; break } }'

test: ## all tests; kernel and truth tests need root, skip without it, and run one package at a time
	$(GO) vet $(PKGS)
	k="$$($(KERNEL_PKGS))"; rc=0; \
	$(GO) test -count=1 -timeout 10m $$($(GO) list $(PKGS) | grep -vxF "$$k") || rc=1; \
	$(GO) test -count=1 -p 1 -timeout 30m $$k || rc=1; \
	exit $$rc

test-short: ## unit tests only
	$(GO) test -short -count=1 $(PKGS)

bench/pingpong_client: bench/c/pingpong_client.c
	$(CC) -O2 -Wall -Wextra -Werror -o $@ $<

bench/pingpong_server: bench/c/pingpong_server.c
	$(CC) -O2 -Wall -Wextra -Werror -o $@ $<

# One package at a time (-p 1): two benchmarks side by side would measure
# each other. Every stage has a time budget; the whole takes under 30 minutes,
# up to 6 of them in TestBenchScale (C10K, 60 s run, client models) and up to
# 7 in TestBenchObserver (run against bench at 64 and 256 connections).
bench: build bench/pingpong_client bench/pingpong_server ## side-by-side ratios with intervals and verdicts, as BENCH lines (root for the probe's)
	VOLLEYSCOPE_BENCH=1 VOLLEYSCOPE_BIN=$(CURDIR)/$(BIN) $(GO) test -count=1 -p 1 -timeout 30m -run 'TestBench' -v ./bench/ ./probe/ ./internal/agent/ 2>&1 | grep --line-buffered -E '^(BENCH|  |--- FAIL|FAIL)'

vmtest: ## kernel matrix under qemu: Debian's 6.1 and 6.12, the probe's tests per hook mode and level, a run each, compared, and guests reached through a tap: a server, and an agent under run --agent (root, ~4 min)
	$(GO) run ./vmtest

lint: ## gofmt and go vet
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (gofmt -l $$(git ls-files '*.go'); exit 1)
	$(GO) vet $(PKGS)

clean: ## remove built files
	rm -f $(BIN) bench/pingpong_client bench/pingpong_server
