package orchestrator

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

// runnerIdleTimeout closes a runner connection idle this long. ai-runner
// serves with uvicorn, whose keep-alive timeout is 5 s: a connection we
// kept longer could be closed by the runner just as a job is written on it.
const runnerIdleTimeout = 4 * time.Second

// newRunnerClient is the HTTP client of the runner calls. Go's default
// transport keeps only 2 idle connections per host, so a runner URL serving
// more jobs at once (an external runner's capacity, a container's) had
// every connection past the second closed after its job and a new one
// dialed for the next: a handshake on the job path and sockets piling up in
// TIME_WAIT. Here every connection a runner can use at once stays open
// between jobs (the number is bounded by the runners' total capacity, as
// no more calls run at once). Runner calls carry their own deadline
// (RunnerTimeout) per request.
func newRunnerClient() *http.Client {
	return &http.Client{Transport: &http.Transport{
		Proxy: http.ProxyFromEnvironment, // as before, with the default transport
		DialContext: (&net.Dialer{
			Timeout:   30 * time.Second,
			KeepAlive: 30 * time.Second,
		}).DialContext,
		MaxIdleConnsPerHost: 1 << 10,
		IdleConnTimeout:     runnerIdleTimeout,
		// Runners answer uncompressed (ai-runner has no gzip middleware);
		// asking for gzip only added a header and a wrapper per call.
		DisableCompression: true,
		// As the default transport: an https runner URL may speak HTTP/2
		// (a custom DialContext turns that off unless asked).
		ForceAttemptHTTP2:     true,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
	}}
}

// answers holds the buffers runner answers are read into: an answer is
// needed only until it is shaped (shapeResult copies what it keeps), and
// a fresh buffer per job was grown and cleared again every time.
var answers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// maxPooledAnswer is the largest buffer kept for reuse; a rare huge answer
// (a video) does not pin its memory.
const maxPooledAnswer = 1 << 20

// readRunnerAnswer reads a runner's answer of at most limit bytes into buf
// (emptied first), grown once from its Content-Length when it declares one.
// It reports an answer over limit as an error.
func readRunnerAnswer(resp *http.Response, limit int64, buf *bytes.Buffer) ([]byte, error) {
	buf.Reset()
	if n := resp.ContentLength; n > 0 && n <= limit {
		buf.Grow(int(n) + bytes.MinRead)
	}
	if _, err := buf.ReadFrom(io.LimitReader(resp.Body, limit+1)); err != nil {
		return nil, fmt.Errorf("read runner answer: %w", err)
	}
	if int64(buf.Len()) > limit {
		return nil, fmt.Errorf("runner answer exceeds %d bytes", limit)
	}
	return buf.Bytes(), nil
}
