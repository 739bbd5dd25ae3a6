# Everyday commands. `make run` brings the mesh up; `make test` runs every test.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# Development-only secret shared by the services and the token minting in the walkthrough.
export AUTH_JWT_SECRET ?= dev-secret-change-me-0123456789

.PHONY: help build run stop audit test fmt lint bench services tools sdk proto-check proto-baseline k8s-validate

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | column -t -s $$'\t'

build: ## build every service (debug)
	cargo build --workspace --bins

services: ## start (installing if missing) PostgreSQL, RabbitMQ, Redis and the MongoDB-protocol test server
	scripts/ensure-services.sh

tools: ## install grpcurl and the Python test tools into .tools/
	scripts/install-grpcurl.sh
	scripts/install-python-tools.sh

run: services tools build ## bring the whole mesh up in the background and print how to call it
	scripts/mesh.sh start

stop: ## stop what `make run` started
	scripts/mesh.sh stop

audit: ## compare both read models of `make run` with the event store; non-zero exit when anything differs
	scripts/audit.sh

test: services tools ## every test: unit, integration (real servers), walkthrough, contracts, SDKs, manifests
	scripts/test.sh

fmt: ## format the code
	cargo fmt --all

lint: ## formatting, clippy (warnings are errors), no unused dependency
	cargo fmt --all -- --check
	scripts/unused-deps.py
	cargo clippy --workspace --all-targets -- -D warnings

bench: services ## release build, private mesh, then command/relay/read-your-writes figures (bench/)
	scripts/bench.sh

sdk: ## generate the Python and TypeScript client SDKs into sdk/ (see sdk/README.md)
	scripts/sdk-generate.sh

proto-check: ## buf lint + buf breaking against proto/baseline/course-v1.binpb
	scripts/proto-check.sh

proto-baseline: ## release an incompatible contract change on purpose: move the buf breaking baseline
	scripts/proto-check.sh --update-baseline

k8s-validate: ## render every Kustomize overlay and validate it (and compose, Dockerfile) offline
	scripts/k8s-validate.sh
