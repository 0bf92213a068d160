package testkit

import (
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"testing"
)

// FreePorts returns n ports free for a server a test starts later (a Caddy
// process, say). They come from below Linux's ephemeral range (32768 and
// up), where a port the kernel picked for a listener or an outgoing
// connection of a test running meanwhile could be taken again before the
// server binds it, and each is handed out once per test binary, as tests
// start servers at the same time.
func FreePorts(t testing.TB, n int) []int {
	t.Helper()
	portsMu.Lock()
	defer portsMu.Unlock()
	var ports []int
	for tries := 0; len(ports) < n; tries++ {
		if tries > 10000 {
			t.Fatal("no free port between 20000 and 32767")
		}
		p := 20000 + rand.IntN(32768-20000)
		if portsGiven[p] {
			continue
		}
		// Every address, as Caddy binds a site's ":port".
		ln, err := net.Listen("tcp", fmt.Sprintf(":%d", p))
		if err != nil {
			continue
		}
		ln.Close()
		portsGiven[p] = true
		ports = append(ports, p)
	}
	return ports
}

var (
	portsMu    sync.Mutex
	portsGiven = map[int]bool{}
)
