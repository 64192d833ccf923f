# Real cf and bosh CLIs for the integration tests, built from the pinned
# wrapper modules integration/tools/cf and integration/tools/bosh (their
# go.mod/go.sum fix the versions; bump with
# `cd integration/tools/cf && go get -tool code.cloudfoundry.org/cli/v8@vX.Y.Z && go mod tidy`).
# Include from the top Makefile:  include integration/tools/tools.mk
# The binaries land in build/bin/ and are rebuilt only when missing.

TOOLS_BIN ?= build/bin

# Evaluated only when a recipe runs (recursive =), so including this file
# costs nothing.
CF_CLI_VERSION = $(shell cd integration/tools/cf && go list -m -f '{{.Version}}' code.cloudfoundry.org/cli/v8)
BOSH_CLI_VERSION = $(patsubst v%,%,$(shell cd integration/tools/bosh && go list -m -f '{{.Version}}' github.com/cloudfoundry/bosh-cli/v7))

$(TOOLS_BIN)/cf:
	mkdir -p $(TOOLS_BIN)
	cd integration/tools/cf && CGO_ENABLED=0 go build -trimpath \
		-ldflags "-s -w -X code.cloudfoundry.org/cli/v8/version.binaryVersion=$(CF_CLI_VERSION)" \
		-o $(abspath $@).tmp code.cloudfoundry.org/cli/v8
	mv $@.tmp $@

$(TOOLS_BIN)/bosh:
	mkdir -p $(TOOLS_BIN)
	cd integration/tools/bosh && CGO_ENABLED=0 go build -trimpath \
		-ldflags "-s -w -X 'github.com/cloudfoundry/bosh-cli/v7/cmd.VersionLabel=$(BOSH_CLI_VERSION)'" \
		-o $(abspath $@).tmp github.com/cloudfoundry/bosh-cli/v7
	mv $@.tmp $@

.PHONY: tools
tools: $(TOOLS_BIN)/cf $(TOOLS_BIN)/bosh
