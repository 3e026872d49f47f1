package lprpc_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/crypto"

	"github.com/lpgauge/lpgauge/contracts/chaintest"
	"github.com/lpgauge/lpgauge/gateway/pm"
	"github.com/lpgauge/lpgauge/orchestrator"
	"github.com/lpgauge/lpgauge/orchestrator/aimodels"
	"github.com/lpgauge/lpgauge/orchestrator/cpurunner"
	"github.com/lpgauge/lpgauge/orchestrator/lprpc"
	"github.com/lpgauge/lpgauge/orchestrator/payment"
)

type countingListener struct {
	net.Listener
	n *atomic.Int64
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return countingConn{Conn: c, n: l.n}, nil
}

type countingConn struct {
	net.Conn
	n *atomic.Int64
}

func (c countingConn) Read(b []byte) (int, error) {
	k, err := c.Conn.Read(b)
	c.n.Add(int64(k))
	return k, err
}

// On chain, an unpaid 95 MB audio upload is refused with the payment gate's
// 402 from its headers: the orchestrator reads almost none of it (it read
// all 95 MB before answering 402).
func TestUnpaidUploadOnChainIsNotRead(t *testing.T) {
	key, _ := crypto.GenerateKey()
	c := chaintest.New(t, key)
	price := &aimodels.Price{}
	price.SetInt64(1000)
	cpu, err := cpurunner.New([]aimodels.Model{{Pipeline: "audio-to-text", ModelID: "openai/whisper-large-v3",
		Warm: true, Capacity: 1, PricePerUnit: price}}, cpurunner.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cpu.Close)
	recv, err := payment.NewReceiver(payment.Config{Signer: pm.NewSigner(key), Chain: payment.ContractChain{L: c.L, Key: key}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(recv.Close)
	rpc := &lprpc.Server{URI: "http://o", Receiver: recv, States: cpu.States, Version: "test"}
	srv, err := orchestrator.New(orchestrator.Config{MaxBodyBytes: 100 << 20, MaxResponseBytes: 1 << 20, MaxQueue: 4,
		QueueTimeout: time.Second, RunnerTimeout: time.Minute, ResultTTL: time.Minute}, cpu, recv.Gate(rpc.Price))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	read := &atomic.Int64{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- lprpc.Serve(ctx, countingListener{Listener: ln, n: read}, lprpc.NewGRPC(rpc), srv.Handler(), nil)
	}()
	t.Cleanup(func() { cancel(); <-done })

	const size = 95 << 20
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /audio-to-text HTTP/1.1\r\nHost: o\r\nContent-Type: multipart/form-data; boundary=b\r\nContent-Length: %d\r\n\r\n", size)
	go func() {
		chunk := make([]byte, 1<<20)
		for left := size; left > 0; left -= len(chunk) {
			if _, err := conn.Write(chunk[:min(left, len(chunk))]); err != nil {
				return
			}
		}
	}()
	_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no answer: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	// As go-livepeer: no Livepeer-Payment is an empty payment, and no
	// Livepeer-Segment fails the credential check (403).
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), "missing segment credentials") {
		t.Errorf("unpaid upload: %d %q, want 403 missing segment credentials", resp.StatusCode, body)
	}
	if n := read.Load(); n > 4<<20 {
		t.Errorf("the orchestrator read %d bytes of an unpaid %d-byte upload before its 403", n, size)
	}
}
