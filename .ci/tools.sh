#!/usr/bin/env bash
# Installs the pinned code-generation and test tools into $(go env GOPATH)/bin,
# skipping any tool whose pinned version is already installed.
set -euo pipefail

BIN="$(go env GOPATH)/bin"
export PATH="$BIN:$PATH"

install() { # install <binary> <module/path@version>
  local bin="$1" pkg="$2" want="${2##*@}" have=""
  if [ -x "$BIN/$bin" ]; then
    have=$(go version -m "$BIN/$bin" 2>/dev/null | awk '$1=="mod"{print $3; exit}')
  fi
  if [ "$have" = "$want" ]; then return 0; fi
  echo "installing $pkg"
  go install "$pkg"
}

install buf                     github.com/bufbuild/buf/cmd/buf@v1.75.0
install protoc-gen-go           google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
install protoc-gen-go-grpc      google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.2
install protoc-gen-grpc-gateway github.com/grpc-ecosystem/grpc-gateway/v2/protoc-gen-grpc-gateway@v2.33.0
install protoc-gen-openapiv2    github.com/grpc-ecosystem/grpc-gateway/v2/protoc-gen-openapiv2@v2.33.0
# helm renders and lints deploy/helm/recserve (.ci/run, go test ./deploy/); it is not in Debian.
install helm                    helm.sh/helm/v3/cmd/helm@v3.22.0
