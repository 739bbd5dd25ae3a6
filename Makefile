# Everyday commands. `make run` brings the mesh up; `make test` runs every test.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# Development-only secret shared by the services and the token minting in the walkthrough.
export AUTH_JWT_SECRET ?= dev-secret-change-me-0123456789

.PHONY: help build run stop test test-rust walkthrough fmt lint bench services tools

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | column -t -s $$'\t'

build: ## build every service (debug)
	cargo build --workspace --bins

services: ## start (installing if missing) PostgreSQL, RabbitMQ, Redis
	scripts/ensure-services.sh

tools: ## install grpcurl and the Python test tools into .tools/
	scripts/install-grpcurl.sh
	scripts/install-python-tools.sh

run: services tools build ## bring the whole mesh up in the background and print how to call it
	scripts/mesh.sh start

stop: ## stop what `make run` started
	scripts/mesh.sh stop

test: services tools ## run every test: unit, integration (real servers), grpcurl walkthrough
	scripts/test.sh

fmt: ## format the code
	cargo fmt --all

lint: ## formatting and clippy, warnings are errors
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

bench: services ## load benchmarks against a local mesh (see bench/)
	scripts/bench.sh
