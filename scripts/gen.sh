#!/usr/bin/env bash
# Regenerates gen/ from proto/ with pinned tool versions. Run from the repo
# root: scripts/gen.sh. The tools are built into .bin/ from the Go module
# proxy, so nothing but Go is needed.
set -euo pipefail
BUF_VERSION=v1.75.0
PROTOC_GEN_GO_VERSION=v1.36.12
PROTOC_GEN_CONNECT_GO_VERSION=v1.21.1
bin="$(pwd)/.bin"
mkdir -p "$bin"
GOBIN="$bin" go install "github.com/bufbuild/buf/cmd/buf@${BUF_VERSION}"
GOBIN="$bin" go install "google.golang.org/protobuf/cmd/protoc-gen-go@${PROTOC_GEN_GO_VERSION}"
GOBIN="$bin" go install "connectrpc.com/connect/cmd/protoc-gen-connect-go@${PROTOC_GEN_CONNECT_GO_VERSION}"
rm -rf gen
PATH="$bin:$PATH" buf generate
