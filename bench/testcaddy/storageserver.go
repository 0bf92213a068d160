package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/caddyserver/certmagic"
	"github.com/spf13/cobra"

	"github.com/caddyspotify/caddy-spotify-auth/internal/remotestorage"
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "serve-test-storage",
		Usage: "--config <path> [--adapter <name>] [--listen <addr>]",
		Short: "Serves the config's storage module to tests over net/rpc (tests only)",
		Long: `
Serves the storage module of the config's global storage option over
net/rpc (internal/remotestorage), each connection with its own instance
of the module, closed with the connection. Prints "listening on <addr>"
once ready. For the plugin's tests only: there is no authentication.
`,
		CobraFunc: func(cmd *cobra.Command) {
			cmd.Flags().StringP("config", "c", "", "Configuration file with a global storage option (required)")
			cmd.Flags().StringP("adapter", "a", "", "Name of config adapter to apply")
			cmd.Flags().StringP("listen", "l", "127.0.0.1:0", "Loopback address to listen on")
			cmd.RunE = caddycmd.WrapCommandFuncForCobra(cmdServeTestStorage)
		},
	})
}

// storageConfig is the part of a Caddy config this command reads.
type storageConfig struct {
	StorageRaw json.RawMessage `json:"storage,omitempty" caddy:"namespace=caddy.storage inline_key=module"`
}

func cmdServeTestStorage(fl caddycmd.Flags) (int, error) {
	cfgJSON, _, _, err := caddycmd.LoadConfig(fl.String("config"), fl.String("adapter"))
	if err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	var cfg storageConfig
	if err := json.Unmarshal(cfgJSON, &cfg); err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	if cfg.StorageRaw == nil {
		return caddy.ExitCodeFailedStartup, errors.New("the config has no storage option")
	}
	l, err := net.Listen("tcp", fl.String("listen"))
	if err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	fmt.Printf("listening on %s\n", l.Addr())
	err = remotestorage.Serve(l, func() (certmagic.Storage, func(), error) {
		// A context per connection: cancelling it cleans up the module.
		ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
		c := storageConfig{StorageRaw: cfg.StorageRaw}
		mod, err := ctx.LoadModule(&c, "StorageRaw")
		if err != nil {
			cancel()
			return nil, nil, err
		}
		s, err := mod.(caddy.StorageConverter).CertMagicStorage()
		if err != nil {
			cancel()
			return nil, nil, err
		}
		return s, cancel, nil
	})
	return caddy.ExitCodeFailedQuit, err
}
