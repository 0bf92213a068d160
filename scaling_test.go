package spotifyauth

import (
	"flag"
	"fmt"
	"math"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/caddyspotify/caddy-spotify-auth/internal/teststorage"
)

var scalingCheck = flag.Bool("scaling", false, "run TestCapacityModelAgainstThreeInstances (about 15 s)")

// TestCapacityModelAgainstThreeInstances checks docs/scaling.md's model of
// storage operations and Spotify calls against three in-process instances
// sharing a recording storage: S sessions, each due for refresh at the
// start, each sending a request every interval for the run, round robin
// over the instances (a load balancer without stickiness).
//
//	go test -run TestCapacityModelAgainstThreeInstances -scaling -v .
func TestCapacityModelAgainstThreeInstances(t *testing.T) {
	t.Parallel()
	if !*scalingCheck {
		t.Skip("a 15 s run that prints figures for docs/scaling.md; go test -run TestCapacityModelAgainstThreeInstances -scaling -v .")
	}
	const (
		instances = 3
		sessions  = 60
		interval  = 200 * time.Millisecond
		run       = 6 * time.Second
	)
	for _, mode := range []string{"cookie", "storage"} {
		t.Run(mode, func(t *testing.T) {
			storage := teststorage.New(t.TempDir())
			opts := []harnessOpt{withStorage(storage)}
			if mode == "storage" {
				opts = append(opts, withStoredSessions())
			}
			hs := newHarness(t, opts...)
			for range instances - 1 {
				hs.addInstance()
			}
			browsers := make([]*http.Client, sessions)
			for i := range browsers {
				browsers[i] = newBrowser(t)
				hs.login(browsers[i], "/", onInstance(i%instances)...)
				hs.nearlyExpire(browsers[i])
			}
			before, spotifyBefore := storage.Calls(), hs.fake.Counts()
			start := time.Now()
			var wg sync.WaitGroup
			var mu sync.Mutex
			requests, failed := 0, 0
			for i, b := range browsers {
				wg.Go(func() {
					time.Sleep(time.Duration(i) * interval / sessions) // spread the starts
					for n := 0; time.Since(start) < run; n++ {
						resp, _ := hs.get(b, "/app/", onInstance((i+n)%instances)...)
						mu.Lock()
						requests++
						if resp.StatusCode != http.StatusOK {
							failed++
						}
						mu.Unlock()
						time.Sleep(interval)
					}
				})
			}
			wg.Wait()
			elapsed := time.Since(start)
			after, spotifyAfter := storage.Calls(), hs.fake.Counts()
			delta := func(m string) int { return after[m] - before[m] }
			refreshes := spotifyAfter.Refreshes - spotifyBefore.Refreshes
			if failed > 0 || refreshes != sessions {
				t.Fatalf("%d of %d requests failed; %d refreshes at Spotify for %d due sessions, want one each", failed, requests, refreshes, sessions)
			}

			// The model (docs/scaling.md). Per refresh, on the instance that makes
			// it: Load the shared back-off, the published result and the
			// published pause (misses), Lock, Load result and pause again,
			// Store the result, Unlock; with stored sessions also Exists +
			// Store of the session.
			perRefresh := map[string]float64{"Load": 5, "Lock": 1, "Unlock": 1, "Store": 1}
			if mode == "storage" {
				perRefresh["Exists"], perRefresh["Store"] = 1, 2
			}
			predicted := map[string]float64{}
			for m, n := range perRefresh {
				predicted[m] = n * sessions
			}
			if mode == "storage" {
				// Each instance sees a session every instances*interval and
				// reads it again once its 1 s cache entry has lapsed.
				seen := time.Duration(instances) * interval
				readEvery := time.Duration(math.Ceil(float64(storedSessionCacheTTL)/float64(seen))) * seen
				predicted["Load"] += float64(sessions*instances) * elapsed.Seconds() / readEvery.Seconds()
			}
			var report string
			for _, m := range []string{"Load", "Store", "Exists", "Lock", "Unlock", "List", "Stat", "Delete"} {
				if delta(m) != 0 || predicted[m] != 0 {
					report += fmt.Sprintf("\n  %-7s predicted %7.0f  measured %7d", m, predicted[m], delta(m))
				}
			}
			t.Logf("%s sessions, %d instances, %d sessions x 1 request / %v for %v (%d requests, %.0f/s): %d refreshes at Spotify (model: %d); storage operations:%s",
				mode, instances, sessions, interval, elapsed.Round(time.Millisecond), requests, float64(requests)/elapsed.Seconds(), refreshes, sessions, report)
		})
	}
}
