package netlab

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"code.cloudfoundry.org/pcap/integration/testreq"
)

// TestCloseKeepsRecordOfWhatItLeft: when a namespace of the lab survives
// Close (its `ip netns del` killed with the run's process group, here one
// made behind the lab's back), the owner record stays, so that the next
// run's Reap removes the namespace once this process is gone; a lab that
// removed everything leaves no record.
func TestCloseKeepsRecordOfWhatItLeft(t *testing.T) {
	testreq.Root(t, "network namespaces need it")
	clean := New("pk")
	if _, err := clean.Netns(); err != nil {
		t.Fatal(err)
	}
	clean.Close()
	if _, err := os.Stat(filepath.Join(RecordDir, clean.prefix)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a lab that removed all it made kept its record: %v", err)
	}

	l := New("pk")
	if _, err := l.Netns(); err != nil {
		t.Fatal(err)
	}
	left := l.prefix + "n99"
	if err := Run("ip", "netns", "add", left); err != nil {
		t.Fatal(err)
	}
	record := filepath.Join(RecordDir, l.prefix)
	t.Cleanup(func() {
		Run("ip", "netns", "del", left)
		os.Remove(record)
	})
	l.Close()
	if _, err := os.Stat(record); err != nil {
		t.Errorf("namespace %s survived Close but its owner record is gone (no later run would remove it): %v", left, err)
	}
}
