# Bazaar: the two commands a newcomer needs are `make run` and `make test`.
GO        ?= go
PKGS      ?= ./...
TEST_FLAGS ?= -race -count=1 -timeout 30m

.PHONY: run test test-unit bench lint up down chaos loadgen

## run: build and start the whole system locally with demo data (Ctrl-C stops it)
# Built, then run (not `go run`, which exits 1 after Ctrl-C even when the program
# stopped cleanly).
run:
	$(GO) build -o bin/devstack ./cmd/devstack
	./bin/devstack

## loadgen: drive a running system (make run) with a crowd of shoppers; flags go in
## ARGS, e.g. make loadgen ARGS="-rate 20 -duration 1m" (./bin/loadgen -h lists them)
loadgen:
	@$(GO) build -o bin/loadgen ./cmd/loadgen && ./bin/loadgen $(ARGS)

## test: lint, then every test (unit, integration against Postgres and Redis, e2e)
test: lint
	@./scripts/ensure-promtool.sh
	@./scripts/ensure-browser.sh
	$(GO) test $(TEST_FLAGS) $(PKGS)

## test-unit: only the tests that need no server
test-unit:
	$(GO) test -short $(TEST_FLAGS) $(PKGS)

## bench: the benchmarks, one package at a time so they do not share the cores
## (see docs/benchmarks.md); nginx is installed first for the gateway's comparison
bench:
	@./scripts/ensure-nginx.sh
	$(GO) test -p 1 -run '^$$' -bench . $(PKGS)

## chaos: the long chaos run (about 20 minutes): a private stack (its own Postgres and
## Redis) broken under load, then judged; exits non-zero on any violation. Flags go in
## CHAOS_FLAGS (-orders, -duration, -rate, -seed; see go run ./cmd/chaos -h), the
## table is read in docs/reliability.md
CHAOS_FLAGS ?=
chaos:
	$(GO) build -o bin/chaos ./cmd/chaos
	./bin/chaos $(CHAOS_FLAGS)

## lint: gofmt and go vet must be clean
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

## up: the same system with docker compose (needs a Docker engine)
up:
	docker compose -f deploy/docker-compose.yml up --build

## down: stop the docker compose system
down:
	docker compose -f deploy/docker-compose.yml down
