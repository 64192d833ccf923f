# pcap — see README.md.
SHELL := /bin/bash
GO ?= go
BIN := bin
PKGS := ./...
# Debian packages the build, tests, demo and benchmark need.
APT_PACKAGES := libpcap-dev tshark tcpdump openssh-client openssh-server iproute2 ruby sshpass procps flex bison haproxy
FUZZTIME ?= 10s
# VERSION is what every binary's --version prints (git describe; "dev"
# when built by plain go build).
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)
# CLIENT_PKGS are the packages the client binaries (cf plugin, pcap-bosh)
# are made of; they ship for linux, darwin and windows.
CLIENT_PKGS := ./plugin/... ./bosh/boshcli ./bosh/cmd/... ./bosh/director ./bosh/uaa ./tunnel/...
CLIENT_OSES := darwin windows
TEST_TIMEOUT ?= 20m

.PHONY: all deps build lint test fuzz demo bench plugin release-blobs soak clean

# The real cf and bosh CLIs the integration tests drive (build/bin/).
include integration/tools/tools.mk

all: build

# deps installs what a fresh Debian machine lacks, non-interactively, with
# one apt-get update, and only when something is missing.
deps:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections; \
	  apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

build: deps
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/ $$($(GO) list -f '{{if eq .Name "main"}}{{.ImportPath}}{{end}}' ./...)

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '^integration/tools/')); \
	  if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	@set -e; for os in $(CLIENT_OSES); do echo "vet client packages for $$os"; CGO_ENABLED=0 GOOS=$$os $(GO) vet $(CLIENT_PKGS); done

# test is what CI runs: install, lint, every test with -race (integration
# tests included: they need root for namespaces), then short fuzz runs.
test: deps lint tools release-blobs plugin
	PCAP_REQUIRE_TOOLS=1 $(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) $(PKGS)
	$(MAKE) --no-print-directory fuzz FUZZTIME=5s

# release-blobs fetches the libpcap source tarball the BOSH release's
# packaging test builds (Debian's copy of the upstream release).
release-blobs:
	@ls build/release-blobs/libpcap-*.tar.gz >/dev/null 2>&1 || bosh/release/scripts/libpcap-source-from-debian

# fuzz runs every fuzz target for FUZZTIME each. A target that fails
# without saving a failing input is the fuzzing engine's own trouble: Go's
# coordinator can report "context deadline exceeded" when -fuzztime ends
# while a worker is mid-input (it compares its context's error with its
# child's before the cancellation reaches the child), more often on a
# loaded machine. Such a run is shown and the target run again, up to
# three runs in all; one that found an input fails at once.
fuzz:
	@set -e; for f in $$(grep -rl --include='*_test.go' '^func Fuzz' . | grep -v '^./integration/tools/'); do \
	  dir=$$(dirname $$f); \
	  for name in $$(grep -ho '^func Fuzz[A-Za-z0-9_]*' $$f | sed 's/^func //'); do \
	    echo "fuzz $$dir $$name ($(FUZZTIME))"; \
	    for run in 1 2 3; do \
	      out=$$(mktemp); \
	      if $(GO) test -run='^$$' -fuzz="^$$name\$$" -fuzztime=$(FUZZTIME) $$dir >$$out 2>&1; then rm -f $$out; break; fi; \
	      cat $$out; rm -f $$out; \
	      if ls $$dir/testdata/fuzz/$$name/* >/dev/null 2>&1 && [ -n "$$(git status --porcelain -- $$dir/testdata/fuzz/$$name)" ]; then \
	        echo "$$name found a failing input (saved under $$dir/testdata/fuzz/$$name)"; exit 1; \
	      fi; \
	      if [ $$run = 3 ]; then echo "$$name failed three times without a failing input"; exit 1; fi; \
	      echo "$$name failed without a failing input (the fuzzing engine itself, run $$run of 3); running it again"; \
	    done; \
	  done; \
	done

# soak runs the reliability and security suite with its long variants
# (PCAP_SOAK=1: a 30 s client stall, 100 rounds of load, a capture that
# outlives its token past pcap-api's 30 s leeway). About 2 minutes.
soak: deps tools
	PCAP_SOAK=1 PCAP_REQUIRE_TOOLS=1 $(GO) test -race -count=1 -timeout 30m -run 'Reliab|Secur' -v ./integration/

# demo runs the whole stack on this machine, in namespaces it makes and
# removes, and writes demo.pcapng.
demo: build tools
	$(BIN)/pcap-demo -bin $(BIN) -out demo.pcapng -cf $(TOOLS_BIN)/cf -cf-out demo-cf.pcapng

bench: deps
	$(GO) build -o $(BIN)/ ./agent/cmd/pcap-agent ./api/cmd/pcap-api ./integration/cmd/pcap-traffic ./integration/cmd/pcap-bench && $(BIN)/pcap-bench -bin $(BIN) -results bench/results $(BENCHFLAGS)

# plugin cross-builds the cf CLI plugin and pcap-bosh (pure Go, no cgo)
# for linux, darwin and windows, amd64 and arm64, into bin/dist/.
PLATFORMS := linux/amd64 linux/arm64 darwin/amd64 darwin/arm64 windows/amd64 windows/arm64
plugin:
	@set -e; for p in $(PLATFORMS); do \
	  os=$${p%/*}; arch=$${p#*/}; ext=""; [ $$os = windows ] && ext=.exe; \
	  echo "building pcap-cf-plugin and pcap-bosh for $$os/$$arch"; \
	  CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/dist/pcap-cf-plugin-$$os-$$arch$$ext ./plugin/cmd/pcap-cf-plugin; \
	  CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/dist/pcap-bosh-$$os-$$arch$$ext ./bosh/cmd/pcap-bosh; \
	done; ls -l $(BIN)/dist

clean:
	rm -rf $(BIN) build demo.pcapng
