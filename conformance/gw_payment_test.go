package conformance

import (
	"context"
	"errors"
	"math/big"
	"testing"

	"github.com/ethereum/go-ethereum/common"
	"google.golang.org/protobuf/proto"

	"github.com/lpgauge/lpgauge/capability"
	"github.com/lpgauge/lpgauge/gateway"
	"github.com/lpgauge/lpgauge/gateway/pm"
	"github.com/lpgauge/lpgauge/schemas/proto/lpnet"
)

// gwTickets is a *_tickets.json vector.
type gwTickets struct {
	Summary struct {
		Fee        string `json:"fee_wei"`
		NumTickets int    `json:"gateway_num_tickets"`
		TicketEV   string `json:"ticket_ev_wei"`
		FirstHash  string `json:"first_ticket_hash"`
		Preimage   string `json:"first_ticket_hash_preimage"`
		Bytes      int    `json:"payment_bytes"`
	} `json:"summary"`
	Tickets []struct {
		Nonce uint32 `json:"sender_nonce"`
		Hash  string `json:"ticket_hash"`
		Sig   string `json:"sig"`
	} `json:"tickets"`
}

// Vectors 04 and 04x (§4): for the 1024×1024 text-to-image job against
// OrchestratorInfo 02b (ticket EV 8e9) and 04x (EV 1e11), our gateway's
// Livepeer-Payment is byte-identical to go-livepeer's: fee = pixels × price,
// ⌈fee/EV⌉ tickets (625, 50), sender nonces 1..n, ticket_params without
// field 7, expiration params in Payment field 3, expected_price = price_info,
// each ticket signed EthSign(ticketHash). The per-ticket hashes and
// signatures are checked too, so a failure names the first ticket that
// differs.
func TestGatewayPayment(t *testing.T) {
	for _, tt := range []struct{ info, payment, tickets string }{
		{"02b_orchestrator_info_text_to_image", "04_payment", "04_tickets.json"},
		{"04x_orchestrator_info_ticketEV_1e11", "04x_payment", "04x_tickets.json"},
	} {
		t.Run(tt.payment, func(t *testing.T) {
			var v gwTickets
			gwJSON(t, tt.tickets, &v)
			g := gwGateway(t, newGWChain())
			info := gwInfo(t, tt.info)
			j, err := g.Pay(context.Background(), info, capability.TextToImage, gwT2IModel, gwJobPixels)
			if err != nil {
				t.Fatal(err)
			}
			if j.Fee.Cmp(gwRat(t, v.Summary.Fee)) != 0 {
				t.Fatalf("fee %s wei, go-livepeer %s", j.Fee.FloatString(0), v.Summary.Fee)
			}
			if j.Tickets != v.Summary.NumTickets {
				t.Fatalf("%d tickets, go-livepeer sends %d", j.Tickets, v.Summary.NumTickets)
			}
			got := gwPayment(t, j.Header.Get(gateway.PaymentHeader))
			tp := got.GetTicketParams()
			if tp.GetExpirationParams() != nil {
				t.Fatal("Payment.ticket_params carries expiration_params (field 7); go-livepeer sends them only in Payment field 3")
			}
			if !proto.Equal(got.GetExpectedPrice(), info.GetPriceInfo()) {
				t.Fatalf("expected_price %v, advertised %v", got.GetExpectedPrice(), info.GetPriceInfo())
			}
			tickets, sigs, err := pm.Tickets(got)
			if err != nil {
				t.Fatal(err)
			}
			if tickets[0].AuxData() == nil || common.Bytes2Hex(append(append(append(append(append(append(
				tickets[0].Recipient.Bytes(), tickets[0].Sender.Bytes()...), common.LeftPadBytes(tickets[0].FaceValue.Bytes(), 32)...),
				common.LeftPadBytes(tickets[0].WinProb.Bytes(), 32)...), common.LeftPadBytes([]byte{1}, 32)...),
				tickets[0].RecipientRandHash.Bytes()...), tickets[0].AuxData()...)) != v.Summary.Preimage[2:] {
				t.Fatalf("ticket 1 hash preimage differs from go-livepeer's %s", v.Summary.Preimage)
			}
			if len(tickets) != len(v.Tickets) {
				t.Fatalf("%d tickets, vector lists %d", len(tickets), len(v.Tickets))
			}
			for i, w := range v.Tickets {
				if tickets[i].SenderNonce != w.Nonce || tickets[i].Hash().Hex() != w.Hash || common.Bytes2Hex(sigs[i]) != w.Sig[2:] {
					t.Fatalf("ticket %d: nonce %d hash %s sig %x\ngo-livepeer: nonce %d hash %s sig %s", i+1,
						tickets[i].SenderNonce, tickets[i].Hash().Hex(), sigs[i], w.Nonce, w.Hash, w.Sig)
				}
			}
			if want := gwB64(t, tt.payment); j.Header.Get(gateway.PaymentHeader) != want {
				b, _ := proto.Marshal(got)
				t.Fatalf("Livepeer-Payment is not go-livepeer's: %d bytes, want %d", len(b), v.Summary.Bytes)
			}
		})
	}
}

// Vector 05 (§5): a free model (price 0, face value and win probability 0)
// is paid as go-livepeer pays it: zero tickets, a Payment with only sender
// and expected price, and a Livepeer-Segment header still sent. Today's main
// refused it as payment/ticket_params_invalid.
func TestGatewayFreeModelPayment(t *testing.T) {
	chain := newGWChain()
	// The deposit checks do not apply to EV-0 tickets (pm/sender.go:199-202).
	chain.sender.Deposit, chain.sender.ReserveRemaining = new(big.Int), new(big.Int)
	g := gwGateway(t, chain)
	info := gwInfo(t, "05a_orchestrator_info_free")
	j, err := g.Pay(context.Background(), info, capability.TextToImage, gwT2IModel, gwJobPixels)
	if err != nil {
		t.Fatalf("free model refused: %v", err)
	}
	if j.Tickets != 0 || j.Fee.Sign() != 0 {
		t.Fatalf("%d tickets for fee %s, want none", j.Tickets, j.Fee.FloatString(0))
	}
	if got, want := j.Header.Get(gateway.PaymentHeader), gwB64(t, "05_payment"); got != want {
		t.Fatalf("Livepeer-Payment %q, go-livepeer %q", got, want)
	}
	if want := "EhQZ5+N258ITt+fn5GzHCl3Qhtr/KioCEAE="; j.Header.Get(gateway.PaymentHeader) != want {
		t.Fatalf("Livepeer-Payment %q, want %q", j.Header.Get(gateway.PaymentHeader), want)
	}
	var sd lpnet.SegData
	if err := pm.DecodeHeader(j.Header.Get(gateway.SegmentHeader), &sd); err != nil {
		t.Fatalf("Livepeer-Segment: %v", err)
	}
	// The orchestrator checks the SegData signature against Payment.sender
	// (server/ai_http.go:1381-1392).
	if err := pm.VerifyKeccak(common.HexToAddress(gwAddressHex), gateway.SegDataMessage(&sd), sd.GetSig()); err != nil {
		t.Fatalf("SegData signature: %v", err)
	}
	// A free model paid again sends nothing more and uses no nonce.
	if _, err := g.Pay(context.Background(), info, capability.TextToImage, gwT2IModel, gwJobPixels); err != nil {
		t.Fatal(err)
	}
	if n := g.Sender.LastNonce(common.BytesToHash(info.GetTicketParams().GetRecipientRandHash())); n != 0 {
		t.Fatalf("free payments used nonces up to %d", n)
	}
}

// §4 nonces: they keep increasing across payments on one PM session (one
// set of ticket params) and start again at 1 on new params
// (pm/sender.go:73-82, 153-156; server/broadcast.go:1571).
func TestGatewayNonces(t *testing.T) {
	g := gwGateway(t, newGWChain())
	ctx := context.Background()
	x := gwInfo(t, "04x_orchestrator_info_ticketEV_1e11")
	first := func(info *lpnet.OrchestratorInfo) (uint32, uint32) {
		t.Helper()
		j, err := g.Pay(ctx, info, capability.TextToImage, gwT2IModel, gwJobPixels)
		if err != nil {
			t.Fatal(err)
		}
		sp := gwPayment(t, j.Header.Get(gateway.PaymentHeader)).GetTicketSenderParams()
		return sp[0].GetSenderNonce(), sp[len(sp)-1].GetSenderNonce()
	}
	if a, b := first(x); a != 1 || b != 50 {
		t.Fatalf("first payment nonces %d..%d, want 1..50", a, b)
	}
	if a, b := first(x); a != 51 || b != 100 {
		t.Fatalf("second payment on the same params: nonces %d..%d, want 51..100", a, b)
	}
	// New params (another recipient rand hash): a new PM session from 1,
	// and the bytes are vector 04's.
	j, err := g.Pay(ctx, gwInfo(t, "02b_orchestrator_info_text_to_image"), capability.TextToImage, gwT2IModel, gwJobPixels)
	if err != nil {
		t.Fatal(err)
	}
	if j.Header.Get(gateway.PaymentHeader) != gwB64(t, "04_payment") {
		t.Fatal("payment on new params is not vector 04 (nonces must start again at 1)")
	}
	if a, _ := first(x); a != 101 {
		t.Fatalf("back on the first params: nonce %d, want 101", a)
	}
}

// §7: the gateway pays ⌈(max(fee, EV) − credit)/EV⌉ tickets, where credit is
// what earlier answered jobs on the same session left over
// (core/accounting.go StageUpdate; server/segment_rpc.go newBalanceUpdate,
// completeBalanceUpdate). A job of 1.5 EV costs 2 tickets and leaves 0.5
// EV, so the next costs 1; a job the orchestrator did not answer spends
// its credit.
func TestGatewayTicketCountWithCredit(t *testing.T) {
	g := gwGateway(t, newGWChain())
	ctx := context.Background()
	info := gwInfo(t, "04x_orchestrator_info_ticketEV_1e11")
	const units = 31457 // × 4768371 wei = 1.49999…e11 wei ≈ 1.5 tickets of EV 1e11
	pay := func() *gateway.Job {
		t.Helper()
		j, err := g.Pay(ctx, info, capability.TextToImage, gwT2IModel, units)
		if err != nil {
			t.Fatal(err)
		}
		return j
	}
	steps := []struct {
		accept bool
		want   int
	}{
		{true, 2},  // no credit: ⌈1.5⌉
		{true, 1},  // 0.5 EV credit: ⌈1.0 − ε⌉
		{false, 2}, // credit ≈ 0 again; this job is not answered
		{true, 2},  // its 0.5 EV change was spent (answered, it would be 1)
	}
	for i, s := range steps {
		j := pay()
		if j.Tickets != s.want {
			t.Fatalf("job %d: %d tickets, want %d (credit before %s)", i+1, j.Tickets, s.want, g.Credit(info).FloatString(0))
		}
		if s.accept {
			j.Accepted()
			j.Accepted() // idempotent
		}
	}
	// The vectors' job from zero credit: 50 tickets, change 610304 wei,
	// the orchestrator's balance after DebitFees in 04x_tickets.json.
	g2 := gwGateway(t, newGWChain())
	j, err := g2.Pay(ctx, info, capability.TextToImage, gwT2IModel, gwJobPixels)
	if err != nil {
		t.Fatal(err)
	}
	j.Accepted()
	if got := g2.Credit(info).FloatString(0); got != "610304" {
		t.Fatalf("credit after the 04x job %s wei, go-livepeer's balance 610304", got)
	}
}

// §8.5: go-livepeer's gateway-side ticket checks with its defaults
// (pm/sender.go:182-230; maxEV 3e12, maxTotalEV 2e13, depositMultiplier 1),
// against the vectors' chain stand-ins.
func TestGatewaySenderChecks(t *testing.T) {
	ctx := context.Background()
	base := gwInfo(t, "04x_orchestrator_info_ticketEV_1e11") // EV 1e11, face value 1.2e15
	withTP := func(f func(tp *lpnet.TicketParams)) *lpnet.OrchestratorInfo {
		info := proto.Clone(base).(*lpnet.OrchestratorInfo)
		f(info.GetTicketParams())
		return info
	}
	face := new(big.Int).SetBytes(base.GetTicketParams().GetFaceValue())
	// units for n tickets of EV ≈ 1e11 at 4768371 wei per pixel
	unitsFor := func(n int64) int64 { return n * 100_000_000_000 / 4768371 }
	for _, tt := range []struct {
		name   string
		info   *lpnet.OrchestratorInfo
		units  int64
		chain  func(c *gwChain)
		mult   int
		want   error
		ticket int
	}{
		{name: "vector 04x passes", info: base, units: gwJobPixels, ticket: 50},
		{name: "199 tickets: total EV under 2e13", info: base, units: unitsFor(199), ticket: 199},
		{name: "201 tickets: total EV over 2e13", info: base, units: unitsFor(201), want: gateway.ErrTotalEVTooHigh},
		{name: "EV over 3e12", info: withTP(func(tp *lpnet.TicketParams) {
			// win prob 1/300 of the max: EV = 1.2e15/300 = 4e12
			tp.WinProb = new(big.Int).Div(pm.MaxWinProb, big.NewInt(300)).Bytes()
		}), units: gwJobPixels, want: gateway.ErrTicketEVTooHigh},
		{name: "EV not below face value", info: withTP(func(tp *lpnet.TicketParams) { tp.WinProb = pm.MaxWinProb.Bytes() }),
			units: gwJobPixels, want: gateway.ErrBadTicketParams},
		{name: "face value over deposit", info: base, units: gwJobPixels, chain: func(c *gwChain) {
			c.sender.Deposit = new(big.Int).Sub(face, big.NewInt(1))
		}, want: gateway.ErrFaceValueTooHigh},
		{name: "face value equal to deposit passes", info: base, units: gwJobPixels, chain: func(c *gwChain) {
			c.sender.Deposit = new(big.Int).Set(face)
		}, ticket: 50},
		{name: "face value over deposit / multiplier 2", info: base, units: gwJobPixels, mult: 2, chain: func(c *gwChain) {
			c.sender.Deposit = new(big.Int).Mul(face, big.NewInt(2))
			c.sender.Deposit.Sub(c.sender.Deposit, big.NewInt(1))
		}, want: gateway.ErrFaceValueTooHigh},
		{name: "zero deposit", info: base, units: gwJobPixels, chain: func(c *gwChain) { c.sender.Deposit = new(big.Int) }, want: gateway.ErrSenderFunds},
		{name: "zero reserve", info: base, units: gwJobPixels, chain: func(c *gwChain) { c.sender.ReserveRemaining = new(big.Int) }, want: gateway.ErrSenderFunds},
		{name: "unlock pending (withdraw round = last round + 1)", info: base, units: gwJobPixels, chain: func(c *gwChain) {
			c.sender.WithdrawRound = big.NewInt(3601)
		}, want: gateway.ErrSenderFunds},
		{name: "params expire in 1 block", info: base, units: gwJobPixels, chain: func(c *gwChain) { c.block = big.NewInt(21000039) },
			want: gateway.ErrParamsExpired},
		{name: "params expire in 2 blocks pass", info: base, units: gwJobPixels, chain: func(c *gwChain) { c.block = big.NewInt(21000038) },
			ticket: 50},
		{name: "expiration block 0", info: withTP(func(tp *lpnet.TicketParams) { tp.ExpirationBlock = nil }), units: gwJobPixels,
			want: gateway.ErrBadTicketParams},
		{name: "no ticket params (on chain)", info: withTP(func(tp *lpnet.TicketParams) {}), units: gwJobPixels, want: pm.ErrNoTicketParams},
	} {
		t.Run(tt.name, func(t *testing.T) {
			chain := newGWChain()
			if tt.chain != nil {
				tt.chain(chain)
			}
			g := gwGateway(t, chain)
			if tt.mult != 0 {
				g.DepositMultiplier = tt.mult
			}
			info := tt.info
			if tt.name == "no ticket params (on chain)" {
				info = proto.Clone(base).(*lpnet.OrchestratorInfo)
				info.TicketParams = nil
			}
			j, err := g.Pay(ctx, info, capability.TextToImage, gwT2IModel, tt.units)
			if tt.want != nil {
				if !errors.Is(err, tt.want) {
					t.Fatalf("got %v, want %v", err, tt.want)
				}
				if n := g.Sender.LastNonce(common.BytesToHash(base.GetTicketParams().GetRecipientRandHash())); n != 0 {
					t.Fatalf("a refused payment used nonces up to %d", n)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if j.Tickets != tt.ticket {
				t.Fatalf("%d tickets, want %d", j.Tickets, tt.ticket)
			}
		})
	}
}

// §8.8 and §4: the fee is units × price as go-livepeer's estimateAIFee
// computes it; for vector 04's job 1048576 px × 4768371 wei.
func TestGatewayFee(t *testing.T) {
	g := gwGateway(t, newGWChain())
	for _, tt := range []struct {
		units int64
		want  string
	}{
		{gwJobPixels, "4999999389696"},
		{256, "1220702976"}, // llm: max_tokens 256 (go-livepeer's default) × price
		{0, "0"},
	} {
		j, err := g.Pay(context.Background(), gwInfo(t, "02b_orchestrator_info_text_to_image"), capability.TextToImage, gwT2IModel, tt.units)
		if err != nil {
			t.Fatal(err)
		}
		if j.Fee.FloatString(0) != tt.want || !j.Fee.IsInt() {
			t.Errorf("fee for %d units %s, want %s", tt.units, j.Fee.FloatString(3), tt.want)
		}
	}
}
