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

func TestNewFakeClosesWhenTheTestEnds(t *testing.T) {
	var url string
	t.Run("a test using the fake", func(t *testing.T) {
		fake := NewFake(t)
		url = fake.TokenURL()
		if _, err := http.Post(url, "application/x-www-form-urlencoded", nil); err != nil {
			t.Fatalf("the fake does not answer during the test: %v", err)
		}
	})
	if resp, err := http.Post(url, "application/x-www-form-urlencoded", nil); err == nil {
		resp.Body.Close()
		t.Fatal("the fake still answers after its test ended")
	}
}
