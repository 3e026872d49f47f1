package runner

import (
	"encoding/json"
	"net/http"
)

// httpError is ai-runner's HTTPError body: {"detail": {"msg": "..."}}. Its Go
// worker reads detail.msg, so the nesting matters.
type httpError struct {
	Detail struct {
		Msg string `json:"msg"`
	} `json:"detail"`
}

// validationIssue is one entry of FastAPI's 422 HTTPValidationError.
type validationIssue struct {
	Type  string `json:"type"`
	Loc   []any  `json:"loc"`
	Msg   string `json:"msg"`
	Input any    `json:"input,omitempty"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	var e httpError
	e.Detail.Msg = msg
	writeJSON(w, status, e)
}

func writeValidation(w http.ResponseWriter, issues []validationIssue) {
	writeJSON(w, http.StatusUnprocessableEntity, map[string]any{"detail": issues})
}

// statusError carries an HTTP status and an HTTPError message out of a
// pipeline, the way ai-runner's routes map exceptions to responses.
type statusError struct {
	status int
	msg    string
}

func (e *statusError) Error() string { return e.msg }

func badRequest(msg string) error { return &statusError{http.StatusBadRequest, msg} }
