// Command fakespotify runs a spotifytest.Server for bench/run.sh: one
// public client registered for the benchmark site's redirect URI, the
// default user approving every consent at once (auto-approve), access
// tokens living an hour so no refresh happens during a run. It prints
// "URL <base URL>" on stdout, then serves until SIGINT or SIGTERM. On
// SIGUSR1 it prints its call counters ("COUNTS {...}") on stdout.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/caddyspotify/caddy-spotify-auth/spotifytest"
)

func main() {
	clientID := flag.String("client-id", "bench", "client ID to register")
	redirectURI := flag.String("redirect-uri", "", "redirect URI to register (required; several separated by commas)")
	lifetime := flag.Duration("token-lifetime", time.Hour, "access token lifetime")
	flag.Parse()
	if *redirectURI == "" {
		fmt.Fprintln(os.Stderr, "fakespotify: -redirect-uri is required")
		os.Exit(2)
	}

	s := spotifytest.NewServer()
	defer s.Close()
	s.AddClient(spotifytest.Client{ID: *clientID, RedirectURIs: strings.Split(*redirectURI, ",")})
	s.SetAutoApprove(spotifytest.DefaultUserID)
	s.SetAccessTokenLifetime(*lifetime)
	fmt.Printf("URL %s\n", s.URL)

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM, syscall.SIGUSR1)
	for s0 := range sig {
		fmt.Printf("COUNTS %+v\n", s.Counts())
		if s0 != syscall.SIGUSR1 {
			return
		}
	}
}
