// Command pcap-bosh captures packets on many VMs of a BOSH deployment at
// once through pcap-api. See package boshcli.
package main

import (
	"os"

	"code.cloudfoundry.org/pcap/bosh/boshcli"
)

func main() {
	os.Exit(boshcli.Run(boshcli.IO{
		Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr,
		StdinTerminal:  isTerminal(os.Stdin),
		StderrTerminal: isTerminal(os.Stderr),
	}, os.Args[1:]))
}

func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
