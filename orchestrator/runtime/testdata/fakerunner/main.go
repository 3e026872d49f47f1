// Command fakerunner is a tiny static ai-runner stand-in for the runtime
// tests: it can crash on start, stay LOADING, and stall /health while a job
// runs (as a single-worker ai-runner does), which the CPU reference runner
// deliberately never does.
package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"sync"
	"time"
)

func main() {
	if os.Getenv("CRASH_ON_START") == "true" {
		fmt.Fprintf(os.Stderr, "loading %s\nfatal: model weights not found in /models/%s\n", os.Getenv("MODEL_ID"), os.Getenv("MODEL_ID"))
		os.Exit(3)
	}
	if os.Getenv("PIPELINE") == "" || os.Getenv("MODEL_ID") == "" {
		fmt.Fprintln(os.Stderr, "PIPELINE and MODEL_ID are required")
		os.Exit(2)
	}
	load, _ := time.ParseDuration(os.Getenv("LOAD_TIME"))
	job, _ := time.ParseDuration(os.Getenv("JOB_TIME"))
	blocks := os.Getenv("HEALTH_BLOCKS_DURING_JOB") == "true"
	start := time.Now()
	var busy sync.RWMutex // a job holds it; a blocking /health waits for it
	// A live runner (PIPELINE=live-video-to-video) listens on 8900 as
	// go-livepeer expects (ai/worker/docker.go:60), reports OK for
	// LIVE_TIME after a stream starts and IDLE otherwise.
	live := os.Getenv("PIPELINE") == "live-video-to-video"
	liveTime, _ := time.ParseDuration(os.Getenv("LIVE_TIME"))
	var streamMu sync.Mutex
	var streamUntil time.Time

	reply := func(w http.ResponseWriter, v any) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(v)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, r *http.Request) {
		if blocks {
			busy.RLock()
			busy.RUnlock()
		}
		status := "OK"
		if live {
			streamMu.Lock()
			if time.Now().After(streamUntil) {
				status = "IDLE"
			}
			streamMu.Unlock()
		}
		if time.Since(start) < load {
			status = "LOADING"
		}
		reply(w, map[string]string{"status": status})
	})
	mux.HandleFunc("GET /version", func(w http.ResponseWriter, r *http.Request) {
		reply(w, map[string]string{"pipeline": os.Getenv("PIPELINE"), "model_id": os.Getenv("MODEL_ID"), "version": "0.0.0-fake"})
	})
	mux.HandleFunc("POST /{pipeline}", func(w http.ResponseWriter, r *http.Request) {
		if tok := os.Getenv("AUTH_TOKEN"); tok != "" && r.Header.Get("Authorization") != "Bearer "+tok {
			http.Error(w, `{"detail":{"msg":"Invalid bearer token"}}`, http.StatusUnauthorized)
			return
		}
		if live {
			streamMu.Lock()
			streamUntil = time.Now().Add(liveTime)
			streamMu.Unlock()
			reply(w, map[string]any{})
			return
		}
		if blocks {
			busy.Lock()
			defer busy.Unlock()
		}
		time.Sleep(job)
		reply(w, map[string]any{"images": []map[string]any{{"url": "data:image/png;base64,", "seed": 1, "nsfw": false}}})
	})
	addr := ":8000"
	if live {
		addr = ":8900"
	}
	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	if err := srv.ListenAndServe(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
