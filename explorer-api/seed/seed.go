// Package seed builds the small network the explorer-api tests read: probe
// rows in a test ClickHouse database and orchestrators registered on a
// simulated chain, with known scores, ranks, history points and errors.
package seed

import (
	"context"
	"crypto/ecdsa"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/ethereum/go-ethereum/params"

	"github.com/lpgauge/lpgauge/contracts/chaintest"
	"github.com/lpgauge/lpgauge/internal/chtest"
	"github.com/lpgauge/lpgauge/internal/results"
	"github.com/lpgauge/lpgauge/internal/results/resultsdb"
)

// Pipelines and models of the seeded network.
const (
	T2I, M1 = "Text to image", "ByteDance/SDXL-Lightning"
	I2V, M2 = "Image to video", "stabilityai/svd"
)

// Orchestrators: A is the best (fast, never fails, FRA and LAX), B slower and
// 3/4 successful, C slow and half failing, D only on I2V and always failing,
// E registered on chain but never probed. Order is A, B, C by score.
var (
	A = addressOf(0xa1)
	B = addressOf(0xb2)
	C = addressOf(0xc3)
	D = addressOf(0xd4)
	// E is an orchestrator no tester has probed (registered on chain by tests).
	E = addressOf(0xe5)
)

// Key is the deterministic private key behind an orchestrator address, so
// the same orchestrator can be probed and registered on chain.
func Key(addr string) *ecdsa.PrivateKey {
	for _, n := range []byte{0xa1, 0xb2, 0xc3, 0xd4, 0xe5} {
		if addressOf(n) == addr {
			return keyOf(n)
		}
	}
	panic("seed: no key for " + addr)
}

func keyOf(n byte) *ecdsa.PrivateKey {
	var b [32]byte
	b[31] = n
	k, err := crypto.ToECDSA(b[:])
	if err != nil {
		panic(err)
	}
	return k
}

func addressOf(n byte) string {
	return strings.ToLower(crypto.PubkeyToAddress(keyOf(n).PublicKey).Hex())
}

// Network is what was seeded.
type Network struct {
	DB  *chtest.DB
	Now time.Time // the clock the API must use: probes lie in its last 24 h
	// Hours are the history buckets every A/B/C series has, oldest first.
	Hours []time.Time
}

func probe(orch, region, pipeline, model string, at time.Time, ok bool, total, server time.Duration, warm bool) results.Result {
	r := results.Result{
		ProbeID: results.ProbeID(orch, region, pipeline, model, at.String()), Region: region, TesterID: "t-" + region, Source: "tester",
		Orchestrator: orch, ServiceURI: "https://" + orch[len(orch)-4:] + ".example:8935", Pipeline: pipeline, Model: model, Warm: warm,
		StartedAt: at, Outcome: results.Success, Total: total, Server: server, Upload: total / 10, Download: total / 20, Discovery: 30 * time.Millisecond,
	}
	if !ok {
		r.Outcome, r.ErrorClass, r.ErrorCode, r.ErrorMessage, r.HTTPStatus = results.Failure, "orchestrator_http", "HTTP-STATUS-503", "runner unavailable", 503
		r.Total, r.Server = total, 0
	}
	return r
}

// Probes seeds the database. Each orchestrator gets probes at now−3h, −2h,
// −1h and −1h+5m (+1 min each), so hourly history has three points.
func Probes(t *testing.T) Network {
	t.Helper()
	return ProbesOn(t, chtest.NewDB(t))
}

// ProbesOn seeds the same probes into db (a database on any engine of
// chtest.Engines).
func ProbesOn(t *testing.T, db *chtest.DB) Network {
	t.Helper()
	now := time.Now().UTC().Truncate(time.Hour)
	n := Network{DB: db, Now: now, Hours: []time.Time{now.Add(-3 * time.Hour), now.Add(-2 * time.Hour), now.Add(-time.Hour)}}
	at := []time.Time{now.Add(-3*time.Hour + time.Minute), now.Add(-2*time.Hour + time.Minute), now.Add(-time.Hour + time.Minute), now.Add(-time.Hour + 6*time.Minute)}
	s := time.Second
	var rows []results.Result
	for i, ts := range at {
		// A: 1 s round trips, server 0.5..0.8 s, the first probe cold.
		for _, reg := range []string{"FRA", "LAX"} {
			rows = append(rows, probe(A, reg, T2I, M1, ts, true, s, time.Duration(500+100*i)*time.Millisecond, i > 0))
		}
		rows = append(rows, probe(B, "FRA", T2I, M1, ts, i != 1, 2*s, 1500*time.Millisecond, true))
		rows = append(rows, probe(C, "FRA", T2I, M1, ts, i%2 == 0, 4*s, 3*s, true))
		rows = append(rows, probe(D, "FRA", I2V, M2, ts, false, 9*s, 0, false))
		rows = append(rows, probe(C, "LAX", I2V, M2, ts, true, 8*s, 6*s, true))
	}
	if err := resultsdb.Insert(context.Background(), db.Conn, db.Name, rows); err != nil {
		t.Fatal(err)
	}
	return n
}

// Chain is contracts/chaintest's simulated chain (the Livepeer stand-ins
// deployed, a background miner, round 1 initialized), with the seeded
// network's registrations.
type Chain struct{ *chaintest.Chain }

// NewChain deploys the contracts on a fresh simulated chain.
func NewChain(t *testing.T) *Chain { return &Chain{chaintest.New(t)} }

// Orchestrator registers the seeded orchestrator addr as a transcoder with stake (LPT), reward
// cut and fee share (percent) and, when uri is not empty, its service URI.
func (c *Chain) Orchestrator(t *testing.T, orch string, stakeLPT int64, rewardCut, feeShare float64, uri string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	key := Key(orch)
	addr := crypto.PubkeyToAddress(key.PublicKey)
	// Gas money for setServiceURI.
	if err := c.send(ctx, addr); err != nil {
		t.Fatal(err)
	}
	stake := new(big.Int).Mul(big.NewInt(stakeLPT), big.NewInt(params.Ether))
	ppm := func(p float64) *big.Int { return big.NewInt(int64(p * 10000)) }
	tx, err := c.L.BondingManager.Transact(ctx, c.L.Opts(c.Owner), "register", addr, stake, ppm(rewardCut), ppm(feeShare), big.NewInt(1), big.NewInt(0))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.L.Wait(ctx, tx); err != nil {
		t.Fatal(err)
	}
	if uri != "" {
		if err := c.L.SetServiceURI(ctx, key, uri); err != nil {
			t.Fatal(err)
		}
	}
}

func (c *Chain) send(ctx context.Context, to common.Address) error {
	from := crypto.PubkeyToAddress(c.Owner.PublicKey)
	client := c.Sim.Client()
	nonce, err := client.PendingNonceAt(ctx, from)
	if err != nil {
		return err
	}
	tip := big.NewInt(params.GWei)
	head, err := client.HeaderByNumber(ctx, nil)
	if err != nil {
		return err
	}
	feeCap := new(big.Int).Add(tip, new(big.Int).Mul(head.BaseFee, big.NewInt(2)))
	tx, err := types.SignTx(types.NewTx(&types.DynamicFeeTx{ChainID: c.L.ChainID, Nonce: nonce, GasTipCap: tip, GasFeeCap: feeCap, Gas: 21000, To: &to,
		Value: big.NewInt(params.Ether)}), types.LatestSignerForChainID(c.L.ChainID), c.Owner)
	if err != nil {
		return err
	}
	if err := client.SendTransaction(ctx, tx); err != nil {
		return err
	}
	return c.L.Wait(ctx, tx)
}

// RegisterMany registers n more transcoders (1 LPT each, no service URI:
// registered, in the pool, not probed), sending every transaction before
// waiting for the last, so hundreds take a few blocks.
func (c *Chain) RegisterMany(t *testing.T, n int) []common.Address {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out []common.Address
	var last *types.Transaction
	// Nonces set here: the pending nonce read per transaction races the miner.
	nonce, err := c.Sim.Client().PendingNonceAt(ctx, crypto.PubkeyToAddress(c.Owner.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		k, _ := crypto.GenerateKey()
		addr := crypto.PubkeyToAddress(k.PublicKey)
		opts := c.L.Opts(c.Owner)
		opts.Context = ctx
		opts.Nonce = new(big.Int).SetUint64(nonce + uint64(i))
		tx, err := c.L.BondingManager.Transact(ctx, opts, "register", addr, big.NewInt(params.Ether), big.NewInt(0), big.NewInt(0), big.NewInt(1), big.NewInt(0))
		if err != nil {
			t.Fatalf("register %d of %d: %v", i+1, n, err)
		}
		last = tx
		out = append(out, addr)
	}
	if last != nil {
		if err := c.L.Wait(ctx, last); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// LivePipeline and LiveModel name the seeded live-video-to-video sessions
// (issue #16): the capability name, and the live pipeline name as model.
const LivePipeline, LiveModel = "Live video to video", "noop"

// Live adds live-video-to-video sessions to n's database, three per
// orchestrator in FRA within the last hour: A streams cleanly (100 ms in→out,
// every frame held, no stall), B lags (400 ms), holds 80 % of the frame rate
// and stalls once a session, C fails two of three sessions and barely keeps
// up when it works. Live scores therefore rank A, B, C.
func Live(t *testing.T, n Network) {
	t.Helper()
	ms, s := time.Millisecond, time.Second
	var rows []results.Result
	for i := 0; i < 3; i++ {
		at := n.Now.Add(-time.Hour + time.Duration(10+i*15)*time.Minute)
		session := func(orch string, ok bool, l results.Live) {
			r := probe(orch, "FRA", LivePipeline, LiveModel, at, ok, l.FirstSegment, 0, true)
			r.ProbeID = results.ProbeID("live", orch, at.String())
			r.Live = l
			if !ok {
				r.ErrorClass, r.ErrorCode, r.ErrorMessage, r.HTTPStatus = "live_stall", "LIVE-STALLED", "output stalled for 12 s", 200
			}
			rows = append(rows, r)
		}
		session(A, true, results.Live{FirstSegment: 400 * ms, FirstFrame: 420 * ms, FramesIn: 600, FramesOut: 600, InFPS: 30, OutFPS: 30,
			LatencyP50: 100 * ms, LatencyP95: 130 * ms, LatencyP99: 150 * ms, PaymentsOK: 4, Session: 20 * s})
		session(B, true, results.Live{FirstSegment: 900 * ms, FirstFrame: 950 * ms, FramesIn: 600, FramesOut: 480, InFPS: 30, OutFPS: 24,
			LatencyP50: 400 * ms, LatencyP95: 550 * ms, LatencyP99: 700 * ms, Stalls: 1, StallTotal: 1 * s, StallMax: 1 * s, PaymentsOK: 4, Session: 20 * s})
		if i == 2 { // its newest session works: a failure streak of 0
			session(C, true, results.Live{FirstSegment: 2 * s, FirstFrame: 2100 * ms, FramesIn: 600, FramesOut: 300, InFPS: 30, OutFPS: 15,
				LatencyP50: 900 * ms, LatencyP95: 1200 * ms, LatencyP99: 1500 * ms, Stalls: 2, StallTotal: 3 * s, StallMax: 2 * s, PaymentsOK: 4, Session: 20 * s})
		} else {
			session(C, false, results.Live{FramesIn: 600, InFPS: 30, Stalls: 1, StallTotal: 12 * s, StallMax: 12 * s, SegmentsLost: 3,
				PaymentsOK: 2, PaymentsRefused: 1, Session: 20 * s})
		}
	}
	if err := resultsdb.Insert(context.Background(), n.DB.Conn, n.DB.Name, rows); err != nil {
		t.Fatal(err)
	}
}
