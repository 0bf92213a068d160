package spotifytest_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"golang.org/x/oauth2"

	"github.com/caddyspotify/caddy-spotify-auth/spotifytest"
)

// Example logs a user in with the authorization code flow and PKCE, the way
// the plugin does, against the fake, and reads the profile.
func Example() {
	s := spotifytest.NewServer()
	defer s.Close()
	s.AddClient(spotifytest.Client{
		ID:           "my-app",
		Secret:       "my-secret",
		RedirectURIs: []string{"http://127.0.0.1:8080/callback"},
	})

	conf := &oauth2.Config{
		ClientID:     "my-app",
		ClientSecret: "my-secret",
		RedirectURL:  "http://127.0.0.1:8080/callback",
		Scopes:       []string{"user-read-email"},
		Endpoint: oauth2.Endpoint{
			AuthURL:   s.AuthorizeURL(),
			TokenURL:  s.TokenURL(),
			AuthStyle: oauth2.AuthStyleInHeader,
		},
	}
	verifier := oauth2.GenerateVerifier()
	authURL := conf.AuthCodeURL("state-123", oauth2.S256ChallengeOption(verifier))

	// What the user's click on Approve does; a browser would get the same
	// callback URL from the consent page at authURL.
	callback, err := s.Approve(authURL, "")
	if err != nil {
		panic(err)
	}
	cb, _ := url.Parse(callback)
	fmt.Println("state:", cb.Query().Get("state"))

	ctx := context.Background()
	tok, err := conf.Exchange(ctx, cb.Query().Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		panic(err)
	}
	fmt.Println("scope:", tok.Extra("scope"))

	resp, err := conf.Client(ctx, tok).Get(s.APIURL() + "/v1/me")
	if err != nil {
		panic(err)
	}
	defer resp.Body.Close()
	var me struct{ ID, Email string }
	_ = json.NewDecoder(resp.Body).Decode(&me)
	fmt.Println("user:", me.ID, me.Email)

	c := s.Counts()
	fmt.Println("approvals:", c.Approvals, "code exchanges:", c.CodeExchanges, "/v1/me calls:", c.Me)
	fmt.Println("client auth:", s.TokenRequests()[0].ClientAuth)
	// Output:
	// state: state-123
	// scope: user-read-email
	// user: testuser test@example.com
	// approvals: 1 code exchanges: 1 /v1/me calls: 1
	// client auth: basic
}

// ExampleServer_InjectFault makes the Web API rate limit the next request,
// as Spotify does when the app's quota is used up.
func ExampleServer_InjectFault() {
	s := spotifytest.NewServer()
	defer s.Close()
	s.InjectFault(spotifytest.EndpointAPI, spotifytest.Fault{Status: http.StatusTooManyRequests, RetryAfter: "30", Reason: "QUOTA_EXCEEDED", Times: 1})

	for range 2 {
		resp, err := http.Get(s.APIURL() + "/v1/me")
		if err != nil {
			panic(err)
		}
		var body struct {
			Error struct {
				Status  int
				Message string
				Reason  string
			}
		}
		_ = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		fmt.Printf("%d Retry-After=%q %q reason=%q\n", resp.StatusCode, resp.Header.Get("Retry-After"), body.Error.Message, body.Error.Reason)
	}
	fmt.Println("API calls:", s.Counts().APICalls)
	// Output:
	// 429 Retry-After="30" "API rate limit exceeded" reason="QUOTA_EXCEEDED"
	// 401 Retry-After="" "Missing/invalid/expired access token" reason=""
	// API calls: 2
}

// ExampleServer_SetRotateRefreshTokens shows refresh token rotation: the
// answer carries a new refresh token and the old one stops working.
func ExampleServer_SetRotateRefreshTokens() {
	s := spotifytest.NewServer()
	defer s.Close()
	s.AddClient(spotifytest.Client{ID: "app", Secret: "secret", RedirectURIs: []string{"http://127.0.0.1:8080/cb"}})
	s.SetRotateRefreshTokens(true)
	s.SetAutoApprove(spotifytest.DefaultUserID)

	conf := &oauth2.Config{
		ClientID: "app", ClientSecret: "secret", RedirectURL: "http://127.0.0.1:8080/cb",
		Endpoint: oauth2.Endpoint{AuthURL: s.AuthorizeURL(), TokenURL: s.TokenURL(), AuthStyle: oauth2.AuthStyleInHeader},
	}
	// With auto-approve, GET /authorize redirects at once.
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noFollow.Get(conf.AuthCodeURL("st"))
	if err != nil {
		panic(err)
	}
	resp.Body.Close()
	loc, _ := url.Parse(resp.Header.Get("Location"))
	ctx := context.Background()
	tok, err := conf.Exchange(ctx, loc.Query().Get("code"))
	if err != nil {
		panic(err)
	}

	old := tok.RefreshToken
	tok.Expiry = time.Now().Add(-time.Minute) // pretend the access token expired
	fresh, err := conf.TokenSource(ctx, tok).Token()
	if err != nil {
		panic(err)
	}
	fmt.Println("rotated:", fresh.RefreshToken != old)

	_, err = conf.TokenSource(ctx, &oauth2.Token{RefreshToken: old}).Token()
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		fmt.Println("old refresh token:", re.ErrorCode)
	}
	// Output:
	// rotated: true
	// old refresh token: invalid_grant
}
