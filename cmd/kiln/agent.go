package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/hashicorp/go-hclog"

	"github.com/kilnml/kiln/node"
)

// stringList is a repeatable string flag.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

const agentHelp = `Usage: kiln agent [flags]

  Runs a Kiln node. Config files (HCL) are merged in order; flags override them.

  -dev                   one node, temp data dir, HTTP on 127.0.0.1:7070; runs no
                         process versions unless -dev-exec is given too
  -dev-exec              with -dev only: process versions may run any command, as
                         the agent's own user (exec { enabled = true,
                         allowed_commands = ["*"] })
  -config FILE           HCL config file (repeatable)
  -node-name NAME        unique node name (default: hostname)
  -data-dir DIR          where Raft, the registry and blobs live
  -bind IP               address for gossip, RPC and HTTP
  -http-addr HOST:PORT   HTTP listen address (default BIND:7070)
  -bootstrap-expect N    servers to wait for before bootstrapping a new cluster
  -retry-join HOST[:PORT] gossip address of a peer (repeatable)
  -encrypt KEY           gossip encryption key, 32 bytes base64
  -log-level LEVEL       trace, debug, info, warn or error
  -log-json              log JSON lines
`

func agentCommand() *command {
	return &command{
		synopsis: "Run a Kiln node",
		help:     agentHelp,
		run:      runAgent,
	}
}

func runAgent(args []string) int {
	fs := flag.NewFlagSet("agent", flag.ContinueOnError)
	fs.Usage = func() { fmt.Fprint(os.Stderr, agentHelp) }
	var (
		dev, devExec                               bool
		configs, retryJoin                         stringList
		nodeName, dataDir, bind, httpAddr, encrypt string
		logLevel                                   string
		bootstrapExpect                            int
		logJSON                                    bool
	)
	fs.BoolVar(&dev, "dev", false, "")
	fs.BoolVar(&devExec, "dev-exec", false, "")
	fs.Var(&configs, "config", "")
	fs.StringVar(&nodeName, "node-name", "", "")
	fs.StringVar(&dataDir, "data-dir", "", "")
	fs.StringVar(&bind, "bind", "", "")
	fs.StringVar(&httpAddr, "http-addr", "", "")
	fs.IntVar(&bootstrapExpect, "bootstrap-expect", 0, "")
	fs.Var(&retryJoin, "retry-join", "")
	fs.StringVar(&encrypt, "encrypt", "", "")
	fs.StringVar(&logLevel, "log-level", "", "")
	fs.BoolVar(&logJSON, "log-json", false, "")
	if err := fs.Parse(args); err != nil {
		return 1
	}
	if fs.NArg() > 0 {
		return fail(fmt.Errorf("unexpected arguments: %v", fs.Args()))
	}
	if devExec && !dev {
		return fail(errors.New("-dev-exec is only valid with -dev: a real node lists what it may run in its exec {} config block"))
	}

	cfg := node.DefaultConfig()
	if dev {
		cfg = node.DevConfig()
	}
	cfg, err := node.LoadFiles(cfg, configs)
	if err != nil {
		return fail(err)
	}
	// Flags override files: apply only the ones given.
	var flagErr error
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "node-name":
			cfg.NodeName = nodeName
		case "data-dir":
			cfg.DataDir = dataDir
		case "bind":
			cfg.BindAddr = bind
		case "http-addr":
			cfg.HTTPAddr = httpAddr
		case "bootstrap-expect":
			cfg.BootstrapExpect = bootstrapExpect
		case "retry-join":
			cfg.RetryJoin = retryJoin
		case "encrypt":
			key, err := node.DecodeEncryptKey(encrypt)
			if err != nil {
				flagErr = fmt.Errorf("-encrypt: %w", err)
			}
			cfg.EncryptKey = key
		case "log-level":
			cfg.LogLevel = logLevel
		case "log-json":
			cfg.LogJSON = logJSON
		}
	})
	if flagErr != nil {
		return fail(flagErr)
	}
	if devExec {
		cfg.Exec.Enabled = true
		cfg.Exec.AllowedCommands = []string{"*"}
	}
	if dev && cfg.DataDir == "" {
		dir, err := os.MkdirTemp("", "kiln-dev-")
		if err != nil {
			return fail(err)
		}
		defer os.RemoveAll(dir)
		cfg.DataDir = dir
	}
	if err := cfg.Validate(); err != nil {
		return fail(err)
	}

	logger := hclog.New(&hclog.LoggerOptions{
		Name:       "kiln",
		Level:      hclog.LevelFromString(cfg.LogLevel),
		JSONFormat: cfg.LogJSON,
		Output:     os.Stderr,
	})
	agent, err := node.New(cfg, logger)
	if err != nil {
		return fail(err)
	}
	fmt.Fprintf(os.Stdout, "kiln agent running: node %s (%s), HTTP %s, data dir %s\n",
		cfg.NodeName, agent.ID(), agent.HTTPAddr(), cfg.DataDir)

	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	for sig := range sigs {
		if sig == syscall.SIGHUP {
			reloaded, err := node.LoadFiles(node.DefaultConfig(), configs)
			level := cfg.LogLevel
			if err != nil {
				logger.Error("reload failed; keeping the current log level", "error", err)
			} else if reloaded.LogLevel != "" && !isFlagSet(fs, "log-level") {
				level = reloaded.LogLevel
			}
			logger.SetLevel(hclog.LevelFromString(level))
			logger.Info("reloaded", "log_level", level)
			continue
		}
		logger.Info("leaving the cluster", "signal", sig.String())
		agent.Leave()
		break
	}
	if err := agent.Shutdown(); err != nil {
		logger.Warn("shutdown", "error", err)
	}
	return 0
}

func isFlagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) {
		if f.Name == name {
			set = true
		}
	})
	return set
}
