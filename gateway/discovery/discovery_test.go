package discovery

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestWebhook(t *testing.T) {
	tests := []struct {
		name   string
		status int
		body   string
		want   []string
		err    string
	}{
		{"go-livepeer shape", 200, `[{"address":"https://o1:8935"},{"address":"https://o2:8935","score":0.9}]`, []string{"https://o1:8935", "https://o2:8935"}, ""},
		{"empty list", 200, `[]`, nil, ""},
		{"not json", 200, `<html>`, nil, "want [{"},
		{"bad uri", 200, `[{"address":"o1:8935"}]`, nil, "not an http(s) URL"},
		{"server error", 500, ``, nil, "status 500"},
		{"too big", 200, `[` + strings.Repeat(" ", MaxWebhookBody+1) + `]`, nil, "over"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				w.WriteHeader(tt.status)
				_, _ = w.Write([]byte(tt.body))
			}))
			defer srv.Close()
			got, err := Webhook{URL: srv.URL}.Orchestrators(context.Background())
			if tt.err != "" {
				if !errors.Is(err, ErrWebhook) || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %v", got)
			}
			for i := range got {
				if got[i].ServiceURI != tt.want[i] {
					t.Errorf("got %s want %s", got[i].ServiceURI, tt.want[i])
				}
			}
		})
	}
}

func TestStatic(t *testing.T) {
	if _, err := (Static{"ftp://x"}).Orchestrators(context.Background()); err == nil {
		t.Error("ftp URI accepted")
	}
	got, err := Static{"https://a:1", "http://b:2"}.Orchestrators(context.Background())
	if err != nil || len(got) != 2 {
		t.Fatalf("%v %v", got, err)
	}
}
