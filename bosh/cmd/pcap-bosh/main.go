// Command pcap-bosh captures packets on many VMs of a BOSH deployment at
// once through pcap-api. See package boshcli.
package main

import (
	"os"

	"code.cloudfoundry.org/pcap/bosh/boshcli"
	"code.cloudfoundry.org/pcap/tunnel/frontdoor"
)

// version is what --version prints; the Makefile sets it to git describe.
var version = "dev"

func main() {
	boshcli.Version = version
	os.Exit(boshcli.Run(boshcli.IO{
		Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr,
		StdinTerminal:  frontdoor.IsTerminal(os.Stdin),
		StderrTerminal: frontdoor.IsTerminal(os.Stderr),
	}, os.Args[1:]))
}
