package testkit

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestGetReturnsTheAnswerWithItsBodyRead(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusTeapot)
		_, _ = io.WriteString(w, "short and stout "+r.URL.Path)
	}))
	defer srv.Close()
	resp, body := Get(t, srv.Client(), srv.URL+"/pot")
	if resp.StatusCode != http.StatusTeapot || body != "short and stout /pot" {
		t.Fatalf("Get: %d %q", resp.StatusCode, body)
	}
}
