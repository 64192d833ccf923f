// Command pcap-traffic sends a bounded number of UDP datagrams, for tests,
// the demo and the benchmark. It sends only to the address it is given,
// which callers keep on loopback or inside their own namespaces.
package main

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"syscall"
	"time"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "pcap-traffic:", err)
		os.Exit(1)
	}
}

func run() error {
	to := flag.String("to", "", "destination host:port (required)")
	count := flag.Int("count", 100, "datagrams to send (1..100000000)")
	size := flag.Int("size", 100, "payload bytes (1..65000)")
	rate := flag.Int("rate", 1000, "datagrams per second, 0 for as fast as possible")
	maxTime := flag.Duration("max-time", 2*time.Minute, "stop after this long even if not all were sent")
	flag.Parse()
	switch {
	case *to == "":
		return errors.New("-to is required")
	case *count < 1 || *count > 100_000_000:
		return fmt.Errorf("-count %d out of range", *count)
	case *size < 1 || *size > 65000:
		return fmt.Errorf("-size %d out of range", *size)
	case *rate < 0:
		return fmt.Errorf("-rate %d is negative", *rate)
	}
	dst, err := net.ResolveUDPAddr("udp", *to)
	if err != nil {
		return err
	}
	// Unconnected, so ICMP errors from a closed port do not fail writes.
	conn, err := net.ListenUDP("udp", nil)
	if err != nil {
		return err
	}
	defer conn.Close()
	payload := make([]byte, *size)
	start := time.Now()
	deadline := start.Add(*maxTime)
	sent := 0
	for sent < *count {
		if *rate > 0 {
			// Pace against the schedule, not per-packet sleeps, so the rate
			// holds at high packet rates.
			due := start.Add(time.Duration(sent) * time.Second / time.Duration(*rate))
			if d := time.Until(due); d > 0 {
				time.Sleep(d)
			}
		}
		if time.Now().After(deadline) {
			break
		}
		payload[0] = byte(sent)
		if _, err := conn.WriteToUDP(payload, dst); err != nil {
			var errno syscall.Errno
			if errors.As(err, &errno) && errno == syscall.ENOBUFS {
				continue // the qdisc is full: try the same datagram again
			}
			return err
		}
		sent++
	}
	fmt.Printf("sent %d in %v\n", sent, time.Since(start).Round(time.Millisecond))
	if sent < *count {
		return fmt.Errorf("sent only %d of %d before -max-time", sent, *count)
	}
	return nil
}
