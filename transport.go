package spotifyauth

import (
	"io"
	"net/http"
	"sync"
	"sync/atomic"
)

// spotifyTransport carries one config's calls to Spotify. A reload must
// leave none of the old config's connections open, so Cleanup calls
// closeIdle (as Caddy's reverse_proxy transport does). net/http then also
// closes the connections of calls still in flight as they finish, but
// only until the next call starts: a request the old server is still
// finishing may call Spotify after Cleanup, and its connection would stay
// idle until it timed out. So once closed, every call closes the idle
// connections again when it ends.
type spotifyTransport struct {
	*http.Transport
	closed atomic.Bool
}

func (t *spotifyTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.Transport.RoundTrip(req)
	if err != nil {
		t.callDone()
		return nil, err
	}
	// The connection is back in the pool once the body has been read to
	// its end (net/http ensures that before Read returns io.EOF), or
	// closed for good if the body is closed early.
	resp.Body = &callBody{ReadCloser: resp.Body, done: t.callDone}
	return resp, nil
}

func (t *spotifyTransport) callDone() {
	if t.closed.Load() {
		t.Transport.CloseIdleConnections()
	}
}

// closeIdle closes the idle connections, now and after every later call.
func (t *spotifyTransport) closeIdle() {
	t.closed.Store(true)
	t.Transport.CloseIdleConnections()
}

// callBody reports the end of a call when its body is closed.
type callBody struct {
	io.ReadCloser
	once sync.Once
	done func()
}

func (b *callBody) Close() error {
	err := b.ReadCloser.Close()
	b.once.Do(b.done)
	return err
}
