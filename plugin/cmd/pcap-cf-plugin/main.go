// Command pcap-cf-plugin is the cf CLI plugin "pcap": install it with
// `cf install-plugin pcap-cf-plugin`, then run `cf pcap APP -o FILE`.
package main

import (
	cfplugin "code.cloudfoundry.org/cli/v8/plugin"

	"code.cloudfoundry.org/pcap/plugin"
)

func main() {
	cfplugin.Start(&plugin.Plugin{})
}
