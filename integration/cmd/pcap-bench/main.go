// Command pcap-bench measures pcap against local tcpdump and the classic
// `ssh host 'tcpdump -U -w -'` pipeline on the same traffic, in network
// namespaces it makes and removes, prints a table and writes JSON and an
// SVG chart. See package integration/bench. Needs root.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"code.cloudfoundry.org/pcap/integration/bench"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "pcap-bench:", err)
		os.Exit(1)
	}
}

func run() error {
	bin := flag.String("bin", "bin", "directory holding pcap-agent, pcap-api and pcap-traffic")
	results := flag.String("results", "bench/results", "directory for <date>.json, latest.json and latest.svg (empty: write nothing)")
	quick := flag.Bool("quick", false, "a smoke run of every part (about a minute) instead of the full run (about ten)")
	tools := flag.String("tools", "", "comma-separated subset of "+bench.ToolLocal+","+bench.ToolSSH+","+bench.ToolPcap)
	rates := flag.String("rates", "", "comma-separated rate ceilings in packets/s (0: unbounded) instead of the defaults")
	sizes := flag.String("sizes", "", "comma-separated payload sizes in bytes instead of the defaults")
	repeats := flag.Int("repeats", 0, "repeats of every point instead of the default")
	fanOut := flag.String("fan-out", "", `comma-separated agent counts for the fan-out runs ("none" skips them)`)
	fanInRates := flag.String("fan-in-rates", "", `comma-separated packets/s per VM for the fan-in runs ("none" skips them)`)
	fanInSizes := flag.String("fan-in-sizes", "", "comma-separated payload sizes for the fan-in runs")
	fanInSeconds := flag.Float64("fan-in-seconds", 0, "seconds each fan-in VM sends, instead of the default")
	cipher := flag.String("ssh-cipher", "", "cipher both OpenSSH clients ask for (ssh -c), e.g. aes128-gcm@openssh.com (default: OpenSSH's choice)")
	from := flag.String("from", "", "measure nothing: print and write again the results in this JSON file")
	latency := flag.Int("latency-runs", -1, "timed captures per agent count instead of the default (0 skips them)")
	flag.Parse()
	abs, err := filepath.Abs(*bin)
	if err != nil {
		return err
	}
	s := bench.Full()
	if *quick {
		s = bench.Quick()
	}
	var errs []error
	if *tools != "" {
		s.Tools = strings.Split(*tools, ",")
	}
	list := func(name, v string, dst *[]int) {
		if v == "" {
			return
		}
		*dst = nil
		if v == "none" {
			return
		}
		for _, f := range strings.Split(v, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil {
				errs = append(errs, fmt.Errorf("-%s: %q is not a number", name, f))
				continue
			}
			*dst = append(*dst, n)
		}
	}
	list("rates", *rates, &s.Rates)
	list("sizes", *sizes, &s.Sizes)
	list("fan-out", *fanOut, &s.FanOut)
	list("fan-in-rates", *fanInRates, &s.FanInRates)
	list("fan-in-sizes", *fanInSizes, &s.FanInSizes)
	if *fanInSeconds > 0 {
		s.FanInSeconds = *fanInSeconds
	}
	if *repeats > 0 {
		s.Repeats, s.FanRepeats, s.FanInRepeats = *repeats, *repeats, *repeats
	}
	s.SSHCipher = *cipher
	if *latency >= 0 {
		s.LatencyRuns = *latency
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	var res *bench.Results
	if *from != "" {
		res, err = bench.Load(*from)
	} else {
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
		defer stop()
		res, err = bench.Run(ctx, bench.Options{Bin: abs, Settings: s, Log: os.Stderr})
	}
	if err != nil {
		return err
	}
	fmt.Println()
	res.WriteTable(os.Stdout)
	if *results == "" {
		return nil
	}
	files, err := res.Save(*results)
	if err != nil {
		return err
	}
	for _, f := range files {
		fmt.Println("wrote", f)
	}
	return nil
}
