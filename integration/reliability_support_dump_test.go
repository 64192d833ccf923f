package integration

import (
	"strings"
	"testing"
)

// The goroutine that made TestReliabilityAPIKilled fail once under load
// (a make test series, 2026-12-05): the handler goroutine of the closed
// connection, caught in its deferred calls after "connection-closed".
const dumpReturning = `goroutine 27 gp=0xc000089860 m=nil [runnable]:
runtime.(*_panic).nextDefer(0xc0001d7e60?)
	/usr/local/go/src/runtime/panic.go:931 +0x150 fp=0xc0001d7e48 sp=0xc0001d7e40 pc=0x4542f0
runtime.deferreturn()
	/usr/local/go/src/runtime/panic.go:664 +0x68 fp=0xc0001d7ed8 sp=0xc0001d7e48 pc=0x453ce8
code.cloudfoundry.org/pcap/tunnel.(*Server).serveConn.func4()
	/tmp/proof/run1/tunnel/server.go:213 +0x187 fp=0xc0001d7fe0 sp=0xc0001d7ed8 pc=0x877907
runtime.goexit({})
	/usr/local/go/src/runtime/asm_amd64.s:1771 +0x1 fp=0xc0001d7fe8 sp=0xc0001d7fe0 pc=0x496981
created by code.cloudfoundry.org/pcap/tunnel.(*Server).serveConn in goroutine 24
	/tmp/proof/run1/tunnel/server.go:209 +0xdf4`

// The same goroutine still in its deferred WaitGroup.Done.
const dumpReturningInDone = `goroutine 27 [running]:
sync.(*WaitGroup).Add(0xc0001d7e60, 0xffffffffffffffff)
	/usr/local/go/src/sync/waitgroup.go:118 +0x1a6
sync.(*WaitGroup).Done(...)
	/usr/local/go/src/sync/waitgroup.go:156
runtime.deferreturn()
	/usr/local/go/src/runtime/panic.go:664 +0x68
code.cloudfoundry.org/pcap/tunnel.(*Server).serveConn.func4()
	/tmp/proof/run1/tunnel/server.go:213 +0x187
runtime.goexit({})
	/usr/local/go/src/runtime/asm_amd64.s:1771 +0x1
created by code.cloudfoundry.org/pcap/tunnel.(*Server).serveConn in goroutine 24
	/tmp/proof/run1/tunnel/server.go:209 +0xdf4`

// A handler that never returned: a leak the test must report.
const dumpBlocked = `goroutine 31 [select]:
runtime.gopark(0xc00021f378?, 0x2?, 0x30?, 0xf1?, 0xc00021f264?)
	/usr/local/go/src/runtime/proc.go:462 +0xce
runtime.selectgo(0xc00021f378, 0xc00021f260, 0x0?, 0x0, 0x0?, 0x1)
	/usr/local/go/src/runtime/select.go:351 +0xbb7
code.cloudfoundry.org/pcap/agent.(*Agent).HandleChannel(0xc0001b8360, {0xc469d8, 0xc0000a88c0}, {0xc45388, 0xc000078200}, {0xc43cf0, 0xc0001b8360})
	/tmp/proof/run1/agent/agent.go:140 +0x258
code.cloudfoundry.org/pcap/tunnel.(*Server).serveConn.func4()
	/tmp/proof/run1/tunnel/server.go:212 +0x187
runtime.goexit({})
	/usr/local/go/src/runtime/asm_amd64.s:1771 +0x1
created by code.cloudfoundry.org/pcap/tunnel.(*Server).serveConn in goroutine 24
	/tmp/proof/run1/tunnel/server.go:209 +0xdf4`

// Runnable, but in its own code (a reader between two reads): alive.
const dumpRunnableWorking = `goroutine 40 [runnable]:
code.cloudfoundry.org/pcap/agent.(*source).read(0xc000200000, 0xc000210000, 0xc000220000)
	/tmp/proof/run1/agent/capture.go:300 +0x55
created by code.cloudfoundry.org/pcap/agent.(*Agent).run in goroutine 31
	/tmp/proof/run1/agent/agent.go:200 +0x99`

// Blocked in a deferred Wait: not on its way out.
const dumpBlockedInDefer = `goroutine 41 [semacquire]:
sync.runtime_SemacquireWaitGroup(0xc0001d7e60?, 0x0?)
	/usr/local/go/src/runtime/sema.go:114 +0x2e
sync.(*WaitGroup).Wait(0xc0001d7e60)
	/usr/local/go/src/sync/waitgroup.go:206 +0x85
runtime.deferreturn()
	/usr/local/go/src/runtime/panic.go:664 +0x68
code.cloudfoundry.org/pcap/tunnel.(*Server).serveConn.func4()
	/tmp/proof/run1/tunnel/server.go:213 +0x187
runtime.goexit({})
	/usr/local/go/src/runtime/asm_amd64.s:1771 +0x1
created by code.cloudfoundry.org/pcap/tunnel.(*Server).serveConn in goroutine 24
	/tmp/proof/run1/tunnel/server.go:209 +0xdf4`

func TestRelGoroutinesInSkipsOnlyReturning(t *testing.T) {
	dump := strings.Join([]string{"SIGQUIT: quit\nPC=0x498cc1 m=0 sigcode=0",
		dumpReturning, dumpReturningInDone, dumpBlocked, dumpRunnableWorking, dumpBlockedInDefer}, "\n\n")
	got := relGoroutinesIn(dump, "agent.(*Agent).HandleChannel", "agent.(*source).read", "tunnel.(*Server).serveConn")
	want := []string{dumpBlocked, dumpRunnableWorking, dumpBlockedInDefer}
	if len(got) != len(want) {
		t.Fatalf("got %d goroutines, want %d:\n%s", len(got), len(want), strings.Join(got, "\n\n"))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("goroutine %d:\n%s\nwant:\n%s", i, got[i], want[i])
		}
	}
}
