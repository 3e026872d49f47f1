package zkserver_test

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/lpgauge/lpgauge/internal/zkserver"
)

func TestStartServesAndStopRemovesEverything(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	zk, err := zkserver.Start(ctx, zkserver.Options{})
	if errors.Is(err, zkserver.ErrNotInstalled) && os.Getenv("CI") != "true" {
		t.Skipf("SKIPPING: %v", err)
	}
	if err != nil {
		t.Fatalf("start zookeeper: %v", err)
	}
	if !zkserver.Serving(zk.Addr) {
		t.Fatalf("zookeeper on %s does not answer ruok after Start", zk.Addr)
	}
	zk.Stop()
	if zkserver.Serving(zk.Addr) {
		t.Errorf("zookeeper on %s still answers after Stop", zk.Addr)
	}
	if _, err := os.Stat(zk.Dir); !os.IsNotExist(err) {
		t.Errorf("temporary dir %s left behind (stat: %v)", zk.Dir, err)
	}
}

// A java that cannot run the server is an error from Start, not a hang.
func TestStartFailsFastWhenTheServerCannotRun(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	if _, err := zkserver.Start(ctx, zkserver.Options{Java: "/bin/false", Classpath: "/nonexistent.jar"}); err == nil {
		t.Fatal("Start with a java that exits at once succeeded")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Start took %s to notice the server exited", d)
	}
}
