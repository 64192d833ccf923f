package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"code.cloudfoundry.org/pcap/integration/testenv"
)

// TestTinyRun runs every part of the benchmark on tiny counts and checks
// its accounting: pcap explains every packet sent (delivered plus drops
// by place), and every tool's figures add up.
func TestTinyRun(t *testing.T) {
	testenv.RequireRoot(t)
	bin := testenv.Binaries(t)
	s := Full()
	s.Rates = []int{20_000}
	s.Sizes = []int{100}
	s.PointSeconds = 0.1 // 2000 packets
	s.Repeats = 1
	s.FanOut = []int{1, 3}
	s.FanRate = 3000
	s.FanSeconds = 0.5
	s.FanRepeats = 1
	s.FanInVMs = 3
	s.FanInRates = []int{5000}
	s.FanInSizes = []int{1400}
	s.FanInSeconds = 0.2 // 1000 packets per VM
	s.FanInRepeats = 1
	s.LatencyRuns = 1
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()
	var log bytes.Buffer
	res, err := Run(ctx, Options{Bin: bin, Settings: s, Log: &log})
	if err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	t.Log("\n" + log.String())

	if got, want := len(res.Points), len(s.Tools); got != want {
		t.Fatalf("%d sweep points, want %d", got, want)
	}
	if len(res.FanInPts) != 2 {
		t.Errorf("%d fan-in points, want pcap and ssh-tcpdump", len(res.FanInPts))
	}
	for _, p := range res.FanInPts {
		if p.Tool == ToolPcap && (len(p.Accounting) != 3 || p.OutOfOrder != 0) {
			t.Errorf("fan-in pcap: accounting %+v, out of order %d", p.Accounting, p.OutOfOrder)
		}
		if p.Tool == ToolPcap && len(p.Accounting) == 3 {
			for _, a := range p.Accounting {
				if !a.Exact {
					t.Errorf("fan-in pcap: inexact accounting %+v", a)
				}
			}
		}
	}
	for _, p := range slices.Concat(res.Points, res.FanPts, res.FanInPts) {
		name := p.Tool
		switch {
		case p.Scenario != "":
			name += " " + p.Scenario
		case p.Agents > 0:
			name += " fan-out"
		}
		want := uint64(2000)
		switch {
		case p.Scenario == ScenarioFanIn:
			want = 3000
		case p.Agents > 0:
			want = uint64(p.Agents * int(float64(3000/p.Agents)*0.5))
		}
		if p.Sent != want {
			t.Errorf("%s: sent %d, want %d", name, p.Sent, want)
		}
		if p.Delivered > p.Sent {
			t.Errorf("%s: delivered %d of %d sent", name, p.Delivered, p.Sent)
		}
		var dropped uint64
		for _, n := range p.Dropped {
			dropped += n
		}
		if p.Delivered+dropped != p.Sent {
			t.Errorf("%s: delivered %d + dropped %v != sent %d", name, p.Delivered, p.Dropped, p.Sent)
		}
		if p.Warning != "" {
			t.Errorf("%s: %s", name, p.Warning)
		}
		if p.Tool == ToolPcap {
			if n := p.Dropped["unaccounted"]; n != 0 {
				t.Errorf("%s: %d packets neither delivered nor counted as dropped by pcap: %v", name, n, p.Dropped)
			}
			if p.CPU["pcap-api"] <= 0 && p.CPU["pcap-agent"] <= 0 {
				t.Errorf("%s: no CPU time recorded: %v", name, p.CPU)
			}
			if p.APIPeakRSS == 0 {
				t.Errorf("%s: no api peak RSS", name)
			}
		}
		// The CPU while sending is part of the whole capture's, for every
		// process measured (the whole in 10 ms ticks: a process below one
		// tick is not listed there).
		if len(p.CPUSending) == 0 {
			t.Errorf("%s: no CPU time while sending recorded", name)
		}
		for proc, sec := range p.CPUSending {
			if all := p.CPU[proc]; sec > all+2*clockTick.Seconds() {
				t.Errorf("%s: %s used %.3f s while sending, more than its %.3f s in all", name, proc, sec, all)
			}
		}
	}
	if len(res.Latency) != 2 {
		t.Errorf("latency for %d agent counts, want 2", len(res.Latency))
	}
	for _, lt := range res.Latency {
		if lt.FirstPacket.Median <= 0 || lt.Stop.Median <= 0 {
			t.Errorf("latency %+v: missing figures", lt)
		}
	}
	if len(res.Sweep) != 3 || len(res.FanOut) != 2 || len(res.FanIn) != 2 || len(res.Targets) == 0 {
		t.Errorf("analysis: %d sweep rows, %d fan-out rows, %d fan-in rows, %d targets", len(res.Sweep), len(res.FanOut), len(res.FanIn), len(res.Targets))
	}

	var table bytes.Buffer
	res.WriteTable(&table)
	for _, want := range []string{ToolLocal, ToolSSH, ToolPcap, "Fan-out", "Fan-in", "Targets:"} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, table.String())
		}
	}
	dir := t.TempDir()
	files, err := res.Save(dir)
	if err != nil {
		t.Fatal(err)
	}
	var back Results
	if b, err := os.ReadFile(files[1]); err != nil || json.Unmarshal(b, &back) != nil || len(back.Points) != len(res.Points) {
		t.Errorf("latest.json does not round-trip: %v", err)
	}
	if b, err := os.ReadFile(files[2]); err != nil || !bytes.Contains(b, []byte("<svg")) || !bytes.Contains(b, []byte("<circle")) {
		t.Errorf("latest.svg lacks the chart: %v", err)
	}
}
