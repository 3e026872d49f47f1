package procgroup

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A child that ignores SIGTERM is killed after the grace period, and its own
// children (the whole group) go with it: nothing is left behind.
func TestStopKillsTheWholeGroup(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "grandchild")
	cmd := exec.Command("sh", "-c", `trap "" TERM; sleep 60 & echo $! > `+pidFile+`; wait`)
	p, err := Start(cmd)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	start := time.Now()
	p.Stop(300 * time.Millisecond)
	if !p.Exited() {
		t.Fatal("process still running after Stop")
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("Stop took %s", took)
	}
	// The grandchild went with the group: gone, or a zombie awaiting its
	// reaper, but not running.
	pid, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Second)
	for {
		stat, err := os.ReadFile("/proc/" + strings.TrimSpace(string(pid)) + "/stat")
		if err != nil || strings.Contains(string(stat), ") Z ") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("grandchild still running: %s", stat)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestPoliteStop(t *testing.T) {
	p, err := Start(exec.Command("sleep", "60"))
	if err != nil {
		t.Fatal(err)
	}
	p.Stop(10 * time.Second)
	if !p.Exited() || p.Err() == nil {
		t.Fatalf("sleep should have been terminated by SIGTERM, err=%v", p.Err())
	}
}
