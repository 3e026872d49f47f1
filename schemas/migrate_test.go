package schemas_test

import (
	"context"
	"testing"
	"time"

	"github.com/lpgauge/lpgauge/internal/chtest"
	"github.com/lpgauge/lpgauge/schemas"
)

func TestMain(m *testing.M) { chtest.Main(m) }

func TestMigrateIsIdempotentAndRecorded(t *testing.T) {
	db := chtest.NewDB(t) // applies everything once
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	again, err := schemas.Migrate(ctx, db.Conn, schemas.Options{Database: db.Name})
	if err != nil {
		t.Fatalf("second migrate: %v", err)
	}
	if len(again) != 0 {
		t.Fatalf("second migrate applied %v again; want nothing", again)
	}
	all, err := schemas.Migrations()
	if err != nil {
		t.Fatal(err)
	}
	var n uint64
	if err := db.Conn.QueryRow(ctx, "SELECT uniqExact(version) FROM "+db.Name+".schema_migrations").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if int(n) != len(all) {
		t.Fatalf("schema_migrations records %d versions, want %d", n, len(all))
	}
	// The raw table has the columns the tester writes and the API reads.
	want := []string{"probe_id", "round_id", "region", "tester_id", "orchestrator", "service_uri", "pipeline", "model",
		"warm", "started_at", "started_at_ms", "outcome", "error_class", "error_code", "error_message", "http_status",
		"connect_us", "tls_us", "upload_us", "server_us", "download_us", "total_us", "request_bytes", "response_bytes"}
	for _, c := range want {
		var cnt uint64
		if err := db.Conn.QueryRow(ctx, "SELECT count() FROM system.columns WHERE database = ? AND table = 'probe_results' AND name = ?", db.Name, c).Scan(&cnt); err != nil {
			t.Fatal(err)
		}
		if cnt != 1 {
			t.Errorf("probe_results lacks column %s", c)
		}
	}
}

func TestMigrationsAreOrderedAndSplit(t *testing.T) {
	ms, err := schemas.Migrations()
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) == 0 {
		t.Fatal("no embedded migrations")
	}
	for i, m := range ms {
		if i > 0 && m.Version <= ms[i-1].Version {
			t.Errorf("migration %s out of order", m.Name)
		}
		if len(m.Statements) == 0 {
			t.Errorf("migration %s has no statements", m.Name)
		}
	}
}
