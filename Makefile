# crm-authz developer commands. `make help` lists them.
# Tools are pinned in tools/go.mod (buf, protoc plugins) and tools/lint/go.mod
# (golangci-lint, govulncheck) and run with `go tool -modfile=...`, so the
# service's go.mod stays free of their dependencies.

GO        ?= go
BUF       := $(GO) tool -modfile=tools/go.mod buf
LINT      := $(GO) tool -modfile=tools/lint/go.mod golangci-lint
VULN      := $(GO) tool -modfile=tools/lint/go.mod govulncheck

.DEFAULT_GOAL := help

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  %-14s %s\n", $$1, $$2}'

.PHONY: run
run: ## run authzd on its embedded default (memory, demo tenant) on :50051
	$(GO) run ./cmd/authzd

.PHONY: build
build: ## build bin/authzd and bin/authzctl
	$(GO) build -o bin/ ./cmd/authzd ./cmd/authzctl

.PHONY: test
test: ## run every test with the race detector (uses PostgreSQL, see README)
	$(GO) test -race -count=1 ./...

.PHONY: deploy-test
deploy-test: ## parse deploy/kubernetes into the Kubernetes API types and check them against the code
	cd deploy && $(GO) test -count=1 ./...

.PHONY: bench
bench: ## run the engine benchmarks (10 and 1,000 tenants beside plain casbin; records)
	$(GO) test -run '^$$' -bench . -benchmem -benchtime 2s ./internal/engine/

.PHONY: load
load: ## authzd against a no-op gRPC server at 10 and 10,000 tenants on PostgreSQL, one table (LOAD_ARGS=...)
	$(GO) build -o bin/ ./cmd/authzd ./cmd/authzgen ./cmd/authzload
	bin/authzload $(LOAD_ARGS)

.PHONY: pgo
pgo: ## refresh cmd/authzd/default.pgo (profile-guided optimization) from authzd's CPU profiles under make load
	bash tools/pgo.sh

.PHONY: bench-log
bench-log: ## Check throughput over gRPC with the decision log off, async and sync
	$(GO) test -run '^$$' -bench CheckDecisionLog -benchtime 330000x ./internal/app/

.PHONY: generate
generate: ## regenerate the Go code of proto/ (committed)
	$(BUF) generate
	$(BUF) generate --template buf.gen.vtproto.yaml --path proto/crmauthz/v1/authorization.proto --path proto/crmauthz/v1/permission.proto

.PHONY: check-generated
check-generated: generate ## fail when the committed generated code differs from a regeneration
	@git diff --exit-code -- proto || (echo "generated code is stale: run make generate and commit" && exit 1)
	@test -z "$$(git status --porcelain -- proto)" || (git status --porcelain -- proto && echo "untracked generated files" && exit 1)

.PHONY: lint-proto
lint-proto: ## buf lint (STANDARD) and format check
	$(BUF) lint
	$(BUF) format --diff --exit-code

.PHONY: breaking
breaking: ## buf breaking-change check against main
	$(BUF) breaking --against '.git#branch=main'

.PHONY: lint
lint: ## go vet, gofmt and golangci-lint
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (gofmt -l $$(git ls-files '*.go') && echo "gofmt needed" && exit 1)
	$(LINT) run ./...

.PHONY: vuln
vuln: ## govulncheck
	$(VULN) ./...
