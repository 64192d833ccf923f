// Command pcap-cf-plugin is the cf CLI plugin "pcap": install it with
// `cf install-plugin pcap-cf-plugin`, then run `cf pcap APP -o FILE`.
package main

import (
	"os"

	cfplugin "code.cloudfoundry.org/cli/v8/plugin"

	"code.cloudfoundry.org/pcap/plugin"
)

// version is what --version prints; the Makefile sets it to git describe.
var version = "dev"

func main() {
	if code, ok := plugin.Standalone(os.Args[1:], version, os.Stdout, os.Stderr); ok {
		os.Exit(code)
	}
	cfplugin.Start(&plugin.Plugin{})
}
