package probe

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"

	"github.com/lpgauge/lpgauge/internal/results"
)

// Class is an error class of the tester's taxonomy: what went wrong, seen
// from a gateway. It is stored in probe_results.error_class; the code beside
// it (Error.Code) says precisely which check failed.
type Class string

// The taxonomy. Every class but ClassTester and ClassCapacity is the
// orchestrator's fault (or the network's between us, which a gateway suffers
// just the same).
const (
	ClassTester       Class = "tester"             // our own fault: never scored (outcome excused)
	ClassDiscovery    Class = "discovery"          // GetOrchestrator failed or did not offer the model
	ClassNetwork      Class = "network"            // DNS, refused, reset, EOF
	ClassTLS          Class = "tls"                // handshake or certificate failure
	ClassTimeout      Class = "timeout"            // a phase ran past its deadline; the code names the phase
	ClassPayment      Class = "payment"            // 402 or ticket/price rejection by the orchestrator
	ClassCredentials  Class = "credentials"        // 401/403: segment credentials or auth refused
	ClassCapacity     Class = "capacity"           // 503 insufficient capacity: busy, not broken (outcome excused)
	ClassBadRequest   Class = "bad_request"        // 400/413/415/422 for a request a known-good runner accepts
	ClassOrchestrator Class = "orchestrator_error" // 5xx, redirects, other statuses
	ClassInvalid      Class = "invalid_output"     // 200 but the output is not what was asked for
)

// Sentinel errors a Preparer (the protocol seam) wraps so the prober can
// classify its failures; see Preparer.
var (
	// ErrDiscovery: GetOrchestrator failed or the orchestrator does not offer the pipeline/model.
	ErrDiscovery = errors.New("discovery failed")
	// ErrPayment: the orchestrator's payment terms were refused or unusable (ticket params, expired quote).
	ErrPayment = errors.New("payment failed")
	// ErrCredentials: segment credentials could not be made from what the orchestrator sent.
	ErrCredentials = errors.New("credentials failed")
	// ErrTesterSide: the fault is ours (our key, our deposit, our price ceiling, our RPC):
	// recorded as excused, never scored against the orchestrator.
	ErrTesterSide = errors.New("tester-side fault")
)

// Error is a classified probe failure.
type Error struct {
	Class   Class
	Code    string // short, stable, machine-readable, e.g. "timeout_server", "http_500", "png_size"
	Status  int    // HTTP status when one was received
	Message string // human detail, bounded when stored
	Err     error  // cause, when there is one
}

func (e *Error) Error() string {
	if e.Message != "" {
		return fmt.Sprintf("%s/%s: %s", e.Class, e.Code, e.Message)
	}
	return fmt.Sprintf("%s/%s", e.Class, e.Code)
}

func (e *Error) Unwrap() error { return e.Err }

// Outcome maps the class to how the score sees it. Our own faults are
// excused, and so is an orchestrator at capacity: a go-livepeer gateway
// takes "insufficient capacity" as "try another orchestrator", without the
// suspension other errors earn, and operators asked that busy orchestrators
// not be scored down. Both stay visible: tester_probes_total{outcome=
// "excused"}, the leaderboard's excused counts and /api/errors.
func (e *Error) Outcome() results.Outcome {
	if e.Class == ClassTester || e.Class == ClassCapacity {
		return results.Excused
	}
	return results.Failure
}

func fail(class Class, code, format string, args ...any) *Error {
	return &Error{Class: class, Code: code, Message: fmt.Sprintf(format, args...)}
}

// invalid builds an invalid_output error; validators return it.
func invalid(code, format string, args ...any) *Error {
	return fail(ClassInvalid, code, format, args...)
}

// Invalid lets pipeline validators outside this file report a wrong output.
func Invalid(code, format string, args ...any) *Error { return invalid(code, format, args...) }

// classifyPrepare turns a Preparer error into the taxonomy.
func classifyPrepare(err error) *Error {
	var e *Error
	switch {
	case errors.As(err, &e):
		return e
	case errors.Is(err, ErrTesterSide):
		return &Error{Class: ClassTester, Code: "prepare", Message: err.Error(), Err: err}
	case errors.Is(err, ErrPayment):
		return &Error{Class: ClassPayment, Code: "prepare_payment", Message: err.Error(), Err: err}
	case errors.Is(err, ErrCredentials):
		return &Error{Class: ClassCredentials, Code: "prepare_credentials", Message: err.Error(), Err: err}
	case errors.Is(err, context.DeadlineExceeded):
		return &Error{Class: ClassTimeout, Code: "timeout_discovery", Message: err.Error(), Err: err}
	default:
		// Unknown preparer errors are discovery failures: the preparer's job
		// is talking to the orchestrator's gRPC endpoint.
		return &Error{Class: ClassDiscovery, Code: "discovery", Message: err.Error(), Err: err}
	}
}

// errRedirect is returned by the client's CheckRedirect: an orchestrator must
// answer at its advertised serviceURI, and following a redirect would time a
// different server.
var errRedirect = errors.New("orchestrator answered with a redirect")

// errBodyTooLarge marks a response body over the size cap.
var errBodyTooLarge = errors.New("body exceeds the size cap")

// classifyTransport classifies an error from the HTTP exchange. phase is the
// phase the exchange had reached when it failed (for timeouts).
func classifyTransport(err error, phase Phase) *Error {
	msg := err.Error()
	var (
		dnsErr  *net.DNSError
		recErr  tls.RecordHeaderError
		certErr *tls.CertificateVerificationError
		alert   tls.AlertError
		unkAuth x509.UnknownAuthorityError
		hostErr x509.HostnameError
		netErr  net.Error
	)
	switch {
	case errors.Is(err, errRedirect):
		return &Error{Class: ClassOrchestrator, Code: "redirect", Message: msg, Err: err}
	case errors.Is(err, errBodyTooLarge):
		return &Error{Class: ClassInvalid, Code: "body_too_large", Message: msg, Err: err}
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &netErr) && netErr.Timeout(),
		strings.Contains(msg, "timeout awaiting response headers"), strings.Contains(msg, "TLS handshake timeout"):
		if strings.Contains(msg, "timeout awaiting response headers") {
			phase = PhaseServer
		}
		if strings.Contains(msg, "TLS handshake timeout") {
			phase = PhaseTLS
		}
		return &Error{Class: ClassTimeout, Code: "timeout_" + string(phase), Message: msg, Err: err}
	case errors.As(err, &dnsErr):
		return &Error{Class: ClassNetwork, Code: "dns", Message: msg, Err: err}
	case errors.As(err, &recErr), errors.As(err, &certErr), errors.As(err, &alert),
		errors.As(err, &unkAuth), errors.As(err, &hostErr), strings.Contains(msg, "tls: "),
		strings.Contains(msg, "HTTP response to HTTPS client"):
		return &Error{Class: ClassTLS, Code: "tls_handshake", Message: msg, Err: err}
	case errors.Is(err, syscall.ECONNREFUSED):
		return &Error{Class: ClassNetwork, Code: "connection_refused", Message: msg, Err: err}
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return &Error{Class: ClassNetwork, Code: "connection_reset", Message: msg, Err: err}
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return &Error{Class: ClassNetwork, Code: "unreachable", Message: msg, Err: err}
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF),
		strings.Contains(msg, "server closed idle connection"), strings.Contains(msg, "malformed HTTP"):
		return &Error{Class: ClassNetwork, Code: "connection_closed", Message: msg, Err: err}
	default:
		return &Error{Class: ClassNetwork, Code: "transport", Message: msg, Err: err}
	}
}

// classifyStatus classifies a non-200 answer from the orchestrator.
func classifyStatus(status int, body string) *Error {
	body = strings.TrimSpace(body)
	e := &Error{Status: status, Code: fmt.Sprintf("http_%d", status), Message: body}
	switch {
	case status == 503 && strings.Contains(strings.ToLower(body), "insufficient capacity"):
		e.Class, e.Code = ClassCapacity, "insufficient_capacity"
	case status == 402:
		e.Class = ClassPayment
	case status == 401 || status == 403:
		e.Class = ClassCredentials
	case status == 400 || status == 413 || status == 415 || status == 422:
		e.Class = ClassBadRequest
	default:
		e.Class = ClassOrchestrator
	}
	return e
}
