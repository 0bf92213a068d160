// Command example is an offline demo of the spotify_auth Caddy plugin. It
// starts, all on 127.0.0.1, a fake Spotify (package spotifytest), a small
// sample app, and Caddy in this process with spotify_auth protecting
// /app/*, then prints the URL to open:
//
//	go run ./example                 # log in on the fake consent page
//	go run ./example -auto-approve   # no consent page, e.g. for curl
//	go run ./example -extended-quota # the fake as Spotify was before 2026
//
// The fake Spotify runs in development mode, as almost every Spotify app
// does since 2026: its consent page offers the demo user, who is on the
// app's user list, and a friend who is not, to show in one click what
// Spotify does to such a user. -extended-quota admits both.
//
// With SPOTIFY_CLIENT_ID set (and optionally SPOTIFY_CLIENT_SECRET) the
// same demo uses real Spotify; register the redirect URI it prints in the
// Spotify developer dashboard.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/caddyspotify/caddy-spotify-auth/spotifytest"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "`host:port` for Caddy; the host must be a loopback IP literal")
	autoApprove := flag.Bool("auto-approve", false, "approve logins on the fake Spotify without showing its consent page")
	extendedQuota := flag.Bool("extended-quota", false, "run the fake Spotify in extended quota (every user admitted, full profiles) instead of development mode")
	flag.Parse()

	opts := options{
		Addr:          *addr,
		RealSpotify:   os.Getenv("SPOTIFY_CLIENT_ID") != "",
		AutoApprove:   *autoApprove,
		ExtendedQuota: *extendedQuota,
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	d, err := start(ctx, opts)
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		fmt.Fprintln(os.Stderr, "Pick another address with -addr, e.g. -addr 127.0.0.1:8081.")
		os.Exit(1)
	}
	if opts.RealSpotify {
		secret := "with the client secret from SPOTIFY_CLIENT_SECRET"
		if os.Getenv("SPOTIFY_CLIENT_SECRET") == "" {
			secret = "as a public client (PKCE, no client secret)"
		}
		fmt.Printf("Using real Spotify: the app in SPOTIFY_CLIENT_ID, %s.\n", secret)
		fmt.Printf("Register this redirect URI in the Spotify dashboard:\n\n  %s\n\n", d.RedirectURI)
		if opts.AutoApprove || opts.ExtendedQuota {
			fmt.Println("(-auto-approve and -extended-quota apply only to the fake Spotify; ignored.)")
		}
	} else {
		consent := "approve on its consent page"
		if opts.AutoApprove {
			consent = "logins are approved automatically"
		}
		fmt.Printf("Fake Spotify at %s (user %q; %s).\n", d.fake.URL, spotifytest.DefaultUser().DisplayName, consent)
		if opts.ExtendedQuota {
			fmt.Println("It runs in extended quota: every user is admitted and /v1/me shares email, country and product.")
		} else {
			fmt.Printf("It runs in development mode, like almost every Spotify app: only %q is on the app's user list,\n"+
				"and /v1/me shares no email, country or product. Pick %q on the consent page to see a user who is not on the list.\n"+
				"-extended-quota turns this off.\n", spotifytest.DefaultUser().DisplayName, unlistedUserName)
		}
		fmt.Println("Set SPOTIFY_CLIENT_ID to use real Spotify instead.")
	}
	fmt.Printf("Open %s and log in with Spotify. Ctrl-C stops the demo.\n", d.AppURL)

	<-ctx.Done()
	stop() // a second Ctrl-C kills at once
	fmt.Println("\nStopping.")
	d.Stop()
}
