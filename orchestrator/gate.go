// Package orchestrator is the reference AI orchestrator: the AI HTTP
// endpoints a gateway calls, capacity that tells the truth, result media under
// /stream/, and the seams where the Livepeer wire protocol (GetOrchestrator,
// payment tickets, segment credentials) and the runner runtime plug in.
package orchestrator

import (
	"context"
	"net/http"

	"github.com/lpgauge/lpgauge/capability"
)

// Job is one AI request as the Gate sees it.
type Job struct {
	Pipeline capability.Pipeline
	Model    string
	// Units are the billing units go-livepeer computes for the request
	// (pixels for image pipelines, max_tokens for llm, audio ms, …).
	Units int64
}

// Refusal is a job refused before it runs, with the status and plain-text
// body go-livepeer sends (402 bad payment, 403 bad credentials, 400 …).
type Refusal struct {
	Status  int
	Message string
}

func (r *Refusal) Error() string { return r.Message }

// Gate checks payment and credentials. The server calls, in go-livepeer's
// order: body decode → Gate.Check (payment 402, credentials 403) → capacity
// reservation (503) → Admission.Pay (400) → run → Admission.Charge on success.
// A refused or failed job is never charged.
type Gate interface {
	Check(r *http.Request, job Job) (Admission, error)
}

// Admission is a checked job's payment state.
type Admission interface {
	// Pay credits the job's tickets and checks the balance covers job units.
	Pay(ctx context.Context) error
	// Charge debits the units after the job succeeded.
	Charge(units int64)
}

// OffChain admits every job without payment, as go-livepeer's
// `-network offchain` does (price 0, no tickets, no signatures).
type OffChain struct{}

// Check implements Gate.
func (OffChain) Check(*http.Request, Job) (Admission, error) { return offChainAdmission{}, nil }

type offChainAdmission struct{}

func (offChainAdmission) Pay(context.Context) error { return nil }
func (offChainAdmission) Charge(int64)              {}
