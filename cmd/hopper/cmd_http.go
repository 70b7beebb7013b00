package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/hopper-dev/hopper/functions"
	"github.com/hopper-dev/hopper/httpfront"
	"github.com/hopper-dev/hopper/spool"
)

func newHTTPCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "http",
		Short: "Run the HTTP front alone (beside a 'hopper serve --http off' on the same spool)",
		Long: `http serves the jobs API and the Ollama/OpenAI drop-in on the configured
address. It only reads and writes spool files, so it may run as its own
process, as another user, beside the runner.`,
		Example: `  hopper http
  hopper http --http 0.0.0.0:11435   # needs tokens: in hopper.yaml or HOPPER_TOKENS`,
		Args: exactArgs(0),
		RunE: a.withConfig(func(cmd *cobra.Command, args []string, cfg Config) error {
			if cfg.HTTP == "off" {
				return usageErrorf(`http is "off": give --http ADDRESS or set http in the config`)
			}
			s, err := a.openSpool(true)
			if err != nil {
				return err
			}
			defer s.Close()
			ln, err := listenFront(cfg)
			if err != nil {
				return err
			}
			reg, err := functions.NewRegistry(cfg.Functions, cfg.FunctionsDir, a.logger.With("part", "functions"))
			if err != nil {
				ln.Close()
				return fmt.Errorf("functions: %w (check them with 'hopper functions validate')", err)
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			// SIGHUP (systemctl reload) re-reads the functions; the front's
			// own settings wait for a restart, and the reload says which.
			stopReload := a.reloadOnHUP(cfg, func(next Config) { a.reloadFunctions(reg, next) })
			defer stopReload()
			watched := make(chan struct{})
			go func() { _ = reg.Watch(ctx); close(watched) }()
			defer func() { stop(); <-watched }() // the watch ends with ctx
			fmt.Fprintf(a.stdout, "hopper http front on http://%s for spool %s (target %s)\n", ln.Addr(), s.Path(), cfg.Ollama)
			return a.serveFront(ctx, cfg, s, reg, ln)
		}),
	}
	cmd.Flags().String("http", Default().HTTP, "listen `ADDRESS`")
	a.bindFlag("http", cmd.Flags().Lookup("http"))
	return cmd
}

// listenFront opens the front's listener, with an error that says what to do.
func listenFront(cfg Config) (net.Listener, error) {
	if !httpfront.LoopbackAddr(cfg.HTTP) && len(cfg.Tokens) == 0 {
		return nil, fmt.Errorf("http %s: %w; set tokens in the config (or HOPPER_TOKENS), or listen on 127.0.0.1", cfg.HTTP, httpfront.ErrInsecure)
	}
	ln, err := net.Listen("tcp", cfg.HTTP)
	if err != nil {
		return nil, fmt.Errorf("http: %w (is another hopper or Ollama there? use --http ADDRESS, or --http off)", err)
	}
	return ln, nil
}

// frontConfig turns the configuration into the front's. Model management
// and the reads go to every target (pulls where the models lists allow,
// reads merged); the one of ollama when targets is empty.
func frontConfig(cfg Config, s *spool.Spool) httpfront.Config {
	var targets []httpfront.Target
	for _, t := range cfg.TargetList() {
		targets = append(targets, httpfront.Target{Name: t.Name, URL: t.URL, Models: t.Models})
	}
	return httpfront.Config{
		Spool:        s,
		Addr:         cfg.HTTP,
		Tokens:       cfg.Tokens,
		Origins:      cfg.Origins,
		WebhookAllow: cfg.Hooks.Allow,
		Targets:      targets,
		MaxBody:      int64(cfg.MaxJobSize),
		MaxUpload:    int64(cfg.MaxUpload),
	}
}

// serveFront runs the HTTP front on ln until ctx ends.
func (a *app) serveFront(ctx context.Context, cfg Config, s *spool.Spool, fns httpfront.Functions, ln net.Listener) error {
	fc := frontConfig(cfg, s)
	fc.Functions, fc.Logger = fns, a.logger.With("part", "http")
	front, err := httpfront.New(fc)
	if err != nil {
		ln.Close()
		return err
	}
	return front.Serve(ctx, ln)
}
