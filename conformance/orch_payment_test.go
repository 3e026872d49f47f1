package conformance

import (
	"context"
	"encoding/json"
	"math/big"
	"net/http"
	"strings"
	"testing"

	"github.com/ethereum/go-ethereum/common"
	"google.golang.org/protobuf/proto"

	"github.com/lpgauge/lpgauge/gateway"
	"github.com/lpgauge/lpgauge/gateway/pm"
	"github.com/lpgauge/lpgauge/schemas/proto/lpnet"
)

const manifest = "27_ByteDance/SDXL-Lightning"

type ticketsFile struct {
	Summary struct {
		Credited       int               `json:"orch_tickets_credited"`
		FirstRejected  *int              `json:"orch_first_rejected_nonce"`
		ProcessErr     string            `json:"orch_process_payment_error"`
		AfterCredit    string            `json:"orch_balance_after_credit"`
		AfterDebit     string            `json:"orch_balance_after_DebitFees"`
		RecipientRand  string            `json:"recipient_rand"`
		NegativeChecks map[string]string `json:"negative_checks_go_livepeer_recipient"`
	} `json:"summary"`
	Tickets []struct {
		Nonce    uint32 `json:"sender_nonce"`
		Hash     string `json:"ticket_hash"`
		Sig      string `json:"sig"`
		Receive  string `json:"recipient_ReceiveTicket"`
		Credited bool   `json:"credited_in_ProcessPayment"`
	} `json:"tickets"`
}

func loadTickets(t *testing.T, name string) ticketsFile {
	t.Helper()
	var f ticketsFile
	if err := json.Unmarshal(vecFile(t, name), &f); err != nil {
		t.Fatal(err)
	}
	return f
}

// checkTickets: every ticket of the payment hashes to go-livepeer's hash,
// its signature is go-livepeer's, and it verifies against the sender.
func checkTickets(t *testing.T, p *lpnet.Payment, f ticketsFile) {
	t.Helper()
	tickets, sigs, err := pm.Tickets(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(tickets) != len(f.Tickets) {
		t.Fatalf("%d tickets, the vector lists %d", len(tickets), len(f.Tickets))
	}
	for i, tk := range tickets {
		want := f.Tickets[i]
		if tk.SenderNonce != want.Nonce || tk.Hash().Hex() != want.Hash || "0x"+common2hex(sigs[i]) != want.Sig {
			t.Fatalf("ticket %d: nonce %d hash %s, go-livepeer: nonce %d hash %s", i, tk.SenderNonce, tk.Hash().Hex(), want.Nonce, want.Hash)
		}
		if err := pm.Verify(vecGateway, tk.Hash().Bytes(), sigs[i]); err != nil {
			t.Fatalf("ticket %d: %v", want.Nonce, err)
		}
	}
}

// TestOrchPayment625: go-livepeer's 625-ticket payment (04) for a
// 1024×1024 text-to-image job, sent over HTTP with go-livepeer's SegData
// (06): the recipientRand our orchestrator derives from Payment field 3 and
// the echoed price is go-livepeer's, tickets 1..600 are credited, 601..625
// exceed the 600 nonces of one recipientRand, so the job is refused with
// HTTP 400 and never reaches the runner. The balance is go-livepeer's
// balance after 600 credits, and the nonces stay used.
func TestOrchPayment625(t *testing.T) {
	f := loadTickets(t, "04_tickets.json")
	p := vecMsg(t, "04_payment.hex", &lpnet.Payment{})
	checkTickets(t, p, f)
	if p.GetTicketParams().GetExpirationParams() != nil || p.GetExpirationParams() == nil {
		t.Fatal("04 must carry expiration params in Payment field 3 only")
	}
	o := newJobOrchestrator(t, 8_000_000_000, vecPrice)
	status, body := o.postT2I(t, vecHeader(t, "04_payment.b64"), vecHeader(t, "06_segdata_text_to_image.b64"))
	if status != http.StatusBadRequest || !strings.Contains(body, "invalid ticket senderNonce: too many values") {
		t.Fatalf("625 tickets: %d %q, go-livepeer answers 400 %q", status, body, f.Summary.ProcessErr)
	}
	if !strings.Contains(body, "nonce=625") {
		t.Errorf("body %q: go-livepeer reports the last rejected nonce, 625", body)
	}
	if n := o.served(); n != 0 {
		t.Errorf("the runner ran %d jobs; go-livepeer runs none", n)
	}
	credited := 0
	for _, tk := range f.Tickets {
		if tk.Credited {
			credited++
		}
	}
	if credited != 600 || f.Summary.Credited != 600 || *f.Summary.FirstRejected != 601 {
		t.Fatalf("vector says %d credited, first rejected %v", credited, f.Summary.FirstRejected)
	}
	if got, want := o.rpc.Receiver.Balance(vecGateway, manifest), ratOf(t, f.Summary.AfterCredit); got.Cmp(want) != 0 {
		t.Errorf("balance %s, go-livepeer %s", got.FloatString(6), want.FloatString(6))
	}
	// The same 600 nonces stay used: the payment again credits nothing.
	before := o.rpc.Receiver.Balance(vecGateway, manifest)
	if status, _ := o.postT2I(t, vecHeader(t, "04_payment.b64"), vecHeader(t, "06_segdata_text_to_image.b64")); status != http.StatusBadRequest {
		t.Errorf("replay: %d, want 400", status)
	}
	if got := o.rpc.Receiver.Balance(vecGateway, manifest); got.Cmp(before) != 0 {
		t.Errorf("replay credited %s", new(big.Rat).Sub(got, before).FloatString(0))
	}
}

// TestOrchPayment50: go-livepeer's 50-ticket payment (04x, ticketEV 1e11)
// is accepted, the job runs, and after DebitFees the balance is exactly
// go-livepeer's +610304 wei. Then go-livepeer's negative checks, each with
// go-livepeer's verdict: replay, a higher echoed price, the same price as
// 9536742/2 (accepted), a signature for another nonce, a signature over
// keccak256(ticket hash); and the balance rule (a paid job with no
// tickets and no credit is 400 Insufficient balance).
func TestOrchPayment50(t *testing.T) {
	f := loadTickets(t, "04x_tickets.json")
	p := vecMsg(t, "04x_payment.hex", &lpnet.Payment{})
	checkTickets(t, p, f)
	o := newJobOrchestrator(t, 100_000_000_000, vecPrice)
	info, err := o.client.GetOrchestrator(context.Background(), vecMsg(t, "01a_orchestrator_request_text_to_image.hex", &lpnet.OrchestratorRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	if want := vecMsg(t, "04x_orchestrator_info_ticketEV_1e11.hex", &lpnet.OrchestratorInfo{}); !proto.Equal(info.GetTicketParams(), want.GetTicketParams()) {
		t.Fatalf("ticket params differ from 04x\ngot:  %s\nwant: %s", pj(info.GetTicketParams()), pj(want.GetTicketParams()))
	}
	seg := vecHeader(t, "06_segdata_text_to_image.b64")
	if status, body := o.postT2I(t, vecHeader(t, "04x_payment.b64"), seg); status != http.StatusOK {
		t.Fatalf("50 tickets: %d %q, go-livepeer accepts and runs the job", status, body)
	}
	if n := o.served(); n != 1 {
		t.Errorf("runner ran %d jobs, want 1", n)
	}
	want := ratOf(t, f.Summary.AfterDebit)
	if got := o.rpc.Receiver.Balance(vecGateway, manifest); got.Cmp(want) != 0 {
		t.Fatalf("balance after the job %s, go-livepeer %s", got.FloatString(6), want.FloatString(6))
	}
	if want.FloatString(0) != "610304" {
		t.Fatalf("vector balance %s", want.FloatString(6))
	}

	gw := mustKey(t, vecGatewayKey)
	neg := f.Summary.NegativeChecks
	// mk builds a payment on the 04x params with the given nonces, price
	// and signing rule.
	mk := func(price *lpnet.PriceInfo, nonces []uint32, sign func(tk *pm.Ticket) []byte) string {
		q := proto.Clone(p).(*lpnet.Payment)
		q.ExpectedPrice = price
		q.TicketSenderParams = nil
		tp := q.GetTicketParams()
		for _, n := range nonces {
			tk := &pm.Ticket{
				Recipient: vecOrch, Sender: vecGateway,
				FaceValue: new(big.Int).SetBytes(tp.GetFaceValue()), WinProb: new(big.Int).SetBytes(tp.GetWinProb()),
				SenderNonce: n, RecipientRandHash: common.BytesToHash(tp.GetRecipientRandHash()),
				CreationRound: q.GetExpirationParams().GetCreationRound(), CreationRoundBlockHash: common.BytesToHash(q.GetExpirationParams().GetCreationRoundBlockHash()),
			}
			q.TicketSenderParams = append(q.TicketSenderParams, &lpnet.TicketSenderParams{SenderNonce: n, Sig: sign(tk)})
		}
		h, err := pm.EncodeHeader(q)
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	good := func(tk *pm.Ticket) []byte { s, _ := gw.Sign(tk.Hash().Bytes()); return s }
	vp := &lpnet.PriceInfo{PricePerUnit: vecPrice, PixelsPerUnit: 1}
	for _, c := range []struct {
		name, header, goLivepeer string
		status                   int
	}{
		{"replay_same_payment", vecHeader(t, "04x_payment.b64"), neg["replay_same_payment"], http.StatusBadRequest},
		{"expected_price_4768372_per_1", mk(&lpnet.PriceInfo{PricePerUnit: vecPrice + 1, PixelsPerUnit: 1}, []uint32{51}, good), neg["expected_price_4768372_per_1"], http.StatusBadRequest},
		{"expected_price_9536742_per_2_fresh_nonce", mk(&lpnet.PriceInfo{PricePerUnit: 2 * vecPrice, PixelsPerUnit: 2}, []uint32{52}, good), neg["expected_price_9536742_per_2_fresh_nonce"], http.StatusOK},
		{"sig_for_other_nonce", mk(vp, []uint32{53}, func(tk *pm.Ticket) []byte { c := *tk; c.SenderNonce = 1; return good(&c) }), neg["sig_for_other_nonce"], http.StatusBadRequest},
		{"sig_over_keccak_of_ticket_hash", mk(vp, []uint32{54}, func(tk *pm.Ticket) []byte { s, _ := gw.SignKeccak(tk.Hash().Bytes()); return s }), neg["sig_over_keccak_of_ticket_hash"], http.StatusBadRequest},
	} {
		if c.goLivepeer == "" {
			t.Fatalf("%s: no go-livepeer verdict in the vector", c.name)
		}
		status, body := o.postT2I(t, c.header, seg)
		if status != c.status {
			t.Errorf("%s: %d %q, go-livepeer: %q → %d", c.name, status, body, c.goLivepeer, c.status)
			continue
		}
		if c.status != http.StatusOK && !strings.Contains(body, strings.SplitN(c.goLivepeer, " sender=", 2)[0]) {
			t.Errorf("%s: body %q does not say go-livepeer's %q", c.name, body, c.goLivepeer)
		}
	}

	// Balance rule (§7): with the job above debited and another 1024² job
	// paid by a zero-ticket payment at the advertised price, the balance
	// (≈ +1 ticket's credit from 9536742/2 minus its fee) is below one
	// ticket's EV: 400 Insufficient balance, job not run.
	served := o.served()
	status, body := o.postT2I(t, mk(vp, nil, good), seg)
	if status != http.StatusBadRequest || !strings.Contains(body, "Insufficient balance") {
		t.Errorf("no tickets, balance %s < EV: %d %q, want 400 Insufficient balance",
			o.rpc.Receiver.Balance(vecGateway, manifest).FloatString(0), status, body)
	}
	if o.served() != served {
		t.Error("job ran on an insufficient balance")
	}
}

// TestOrchPaymentFree: for a price-0 model go-livepeer's gateway sends the
// zero-ticket payment (05: sender and expected price 0/1 only); our
// orchestrator accepts it and runs the job, verifying the SegData signature
// against Payment.sender. Without the sender (an empty header) the SegData
// check fails: 403.
func TestOrchPaymentFree(t *testing.T) {
	o := newJobOrchestrator(t, 8_000_000_000, 0)
	info, err := o.client.GetOrchestrator(context.Background(), vecMsg(t, "01a_orchestrator_request_text_to_image.hex", &lpnet.OrchestratorRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	if want := vecMsg(t, "05a_orchestrator_info_free.hex", &lpnet.OrchestratorInfo{}); !proto.Equal(info.GetTicketParams(), want.GetTicketParams()) || !proto.Equal(info.GetPriceInfo(), want.GetPriceInfo()) {
		t.Fatalf("free model info differs from 05a\ngot:  %s\nwant: %s", pj(info), pj(want))
	}
	seg := vecHeader(t, "06_segdata_text_to_image.b64")
	if status, body := o.postT2I(t, vecHeader(t, "05_payment.b64"), seg); status != http.StatusOK {
		t.Fatalf("free payment 05: %d %q, go-livepeer accepts it", status, body)
	}
	if status, body := o.postT2I(t, "", seg); status != http.StatusForbidden {
		t.Errorf("no payment header: %d %q, go-livepeer: 403 (SegData sig against sender 0x0)", status, body)
	}
	if status, body := o.postT2I(t, "not base64!", seg); status != http.StatusPaymentRequired {
		t.Errorf("bad payment header: %d %q, want 402", status, body)
	}
}

// TestOrchSegData: go-livepeer's SegData (06) signs Flatten() = manifest
// id ‖ pad32(seq) ‖ hash; our check rebuilds the same bytes and verifies
// the signature against Payment.sender; its auth token (02b's) verifies;
// its capabilities (01a's) pass CompatibleWith against ours. Tampering with
// any of them is 403.
func TestOrchSegData(t *testing.T) {
	var signing struct {
		Flatten string `json:"flatten_hex"`
		Sig     string `json:"signature"`
	}
	if err := json.Unmarshal(vecFile(t, "06_segdata_signing.json"), &signing); err != nil {
		t.Fatal(err)
	}
	sd := vecMsg(t, "06_segdata_text_to_image.hex", &lpnet.SegData{})
	if got := "0x" + common2hex(gateway.SegDataMessage(sd)); got != signing.Flatten {
		t.Fatalf("signed bytes %s, go-livepeer's Flatten %s", got, signing.Flatten)
	}
	if err := pm.VerifyKeccak(vecGateway, gateway.SegDataMessage(sd), sd.GetSig()); err != nil {
		t.Fatalf("06 sig: %v", err)
	}
	o := newJobOrchestrator(t, 100_000_000_000, vecPrice)
	pay := vecHeader(t, "04x_payment.b64")
	enc := func(m *lpnet.SegData) string { h, _ := pm.EncodeHeader(m); return h }
	tamper := map[string]func(*lpnet.SegData){
		"manifest":    func(m *lpnet.SegData) { m.ManifestId = []byte("27_other") },
		"auth token":  func(m *lpnet.SegData) { m.AuthToken.Expiration++ },
		"no token":    func(m *lpnet.SegData) { m.AuthToken = nil },
		"llm bit too": func(m *lpnet.SegData) { m.Capabilities.Bitstring[0] |= 1 << 40 },
		"min version": func(m *lpnet.SegData) {
			m.Capabilities.Constraints.MinVersion = "0.9.2"
		},
	}
	for name, f := range tamper {
		m := proto.Clone(sd).(*lpnet.SegData)
		f(m)
		if status, body := o.postT2I(t, pay, enc(m)); status != http.StatusForbidden {
			t.Errorf("%s tampered: %d %q, want 403", name, status, body)
		}
	}
	if n := o.served(); n != 0 {
		t.Errorf("%d jobs ran on bad credentials", n)
	}
	if status, body := o.postT2I(t, pay, enc(sd)); status != http.StatusOK {
		t.Errorf("go-livepeer's own SegData: %d %q", status, body)
	}
}
