# Two commands a newcomer needs: `make demo` and `make test`.
# Every target works on a fresh machine; .ci/run proves it.

SQLC_VERSION := v1.31.1
GO ?= go
# The local server the README sets up; DATABASE_URL / TEST_DATABASE_URL override.
LOCAL_URL := postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable
DEMO_URL := $(or $(DATABASE_URL),postgres://postgres@127.0.0.1:5432/pges_demo?sslmode=disable)
BENCH_FLAGS ?= -duration 5s
# The scale study (issue #7): its own database, tenant bench_scale grown to
# 10M events (~13 minutes on 2 cores, ~7 GB); tables in bench/plots/scale.md.
SCALE_URL := $(or $(DATABASE_URL),postgres://postgres@127.0.0.1:5432/pges_scale?sslmode=disable)
SCALE_FLAGS ?= --scale 10000,100000,1000000,10000000 --plots bench/plots --markdown

.PHONY: all build test test-short vet fmt-check generate schema schema-check sqlc-check sqlc-version db demo bench bench-scale ci clean

all: build

build:
	$(GO) build -o bin/esadmin ./cmd/esadmin

db:
	@./scripts/ensure-postgres.sh

test: db
	$(GO) test -race -count=1 -timeout 20m ./...

test-short: db
	$(GO) test -short -count=1 ./...

vet:
	$(GO) vet ./...

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

# sqlc is pinned twice on purpose: go.mod's tool directive fixes the build,
# this check fails if someone bumps one without the other.
sqlc-version:
	@v=$$($(GO) tool sqlc version); if [ "$$v" != "$(SQLC_VERSION)" ]; then \
		echo "sqlc is $$v, the Makefile pins $(SQLC_VERSION)"; exit 1; fi

# db/schema.sql is the current schema, dumped from a freshly migrated
# database; sqlc reads it. Regenerate both after adding a migration.
schema: db
	./scripts/schema.sh db/schema.sql

schema-check: db
	@tmp=$$(mktemp); ./scripts/schema.sh $$tmp && if ! diff -u db/schema.sql $$tmp; then \
		rm -f $$tmp; echo "db/schema.sql is stale: run make schema generate"; exit 1; fi; rm -f $$tmp

generate: sqlc-version
	$(GO) tool sqlc generate

sqlc-check: sqlc-version
	$(GO) tool sqlc diff

demo: db build
	@./scripts/demo.sh "$(DEMO_URL)"

bench: db build
	@./scripts/ensure-db.sh "$(DEMO_URL)"
	./bin/esadmin --database-url "$(DEMO_URL)" bench $(BENCH_FLAGS)

# --reset: every run starts the study's tenant from nothing.
bench-scale: db build
	@./scripts/ensure-db.sh "$(SCALE_URL)"
	@mkdir -p bench/plots
	./bin/esadmin --database-url "$(SCALE_URL)" bench --reset $(SCALE_FLAGS) > bench/plots/scale.md
	@cat bench/plots/scale.md

ci: fmt-check vet schema-check sqlc-check test

clean:
	rm -rf bin
