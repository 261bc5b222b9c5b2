// Command kiln is the Kiln agent and its admin CLI in one binary.
//
// `kiln agent` runs a node; every other subcommand talks HTTP to a node given by
// -address or KILN_ADDR (default http://127.0.0.1:7070).
//
// Errors are one line on stderr and exit status 1. When a request does not
// reach Kiln's API as it should, the line says so in a person's terms
// (client_errors.go): no agent at the address (and how to set it or start
// one), HTTP against HTTPS or the reverse, an untrusted CA, a client
// certificate wanted, a missing or refused token, a timeout, or an answer
// that is not Kiln's JSON. Kiln's own errors keep the server's words, with
// its code and HTTP status.
package main

import (
	"os"

	"github.com/hashicorp/cli"

	"github.com/kilnml/kiln/node"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	c := cli.NewCLI("kiln", node.Version)
	c.Args = args
	c.HelpWriter = os.Stdout
	c.ErrorWriter = os.Stderr
	c.Commands = map[string]cli.CommandFactory{
		"agent":                     factory(agentCommand()),
		"status":                    factory(statusCommand()),
		"members":                   factory(membersCommand()),
		"nodes":                     factory(nodesCommand()),
		"operator":                  factory(groupCommand("Operate the cluster: Raft peers, gossip keys", "kiln operator <raft|gossip>")),
		"operator raft":             factory(groupCommand("List or remove Raft peers", "kiln operator raft <list-peers|remove-peer>")),
		"operator raft list-peers":  factory(listPeersCommand()),
		"operator raft remove-peer": factory(removePeerCommand()),
		"models":                    factory(groupCommand("Manage models and their versions", "kiln models <create|list|get|tag|delete|push|pull|versions|alias|metrics>")),
		"models create":             factory(modelsCreateCommand()),
		"models list":               factory(modelsListCommand()),
		"models get":                factory(modelsGetCommand()),
		"models tag":                factory(modelsTagCommand()),
		"models delete":             factory(modelsDeleteCommand()),
		"models push":               factory(modelsPushCommand()),
		"models pull":               factory(modelsPullCommand()),
		"models versions":           factory(modelsVersionsCommand()),
		"models alias":              factory(modelsAliasCommand()),
		"models metrics":            factory(modelsMetricsCommand()),
		"deploy":                    factory(deployCommand()),
		"deployments":               factory(groupCommand("Inspect and change deployments", "kiln deployments <list|get|rollback|delete>")),
		"deployments list":          factory(deploymentsListCommand()),
		"deployments get":           factory(deploymentsGetCommand()),
		"deployments rollback":      factory(deploymentsRollbackCommand()),
		"deployments delete":        factory(deploymentsDeleteCommand()),
		"predict":                   factory(predictCommand()),
		"snapshot":                  factory(groupCommand("Save or restore the registry", "kiln snapshot <save|restore> FILE")),
		"snapshot save":             factory(snapshotSaveCommand()),
		"snapshot restore":          factory(snapshotRestoreCommand()),
		"bench":                     factory(groupCommand("Benchmarks against a running cluster", "kiln bench <registry|predict|features> [flags]")),
		"bench registry":            factory(benchRegistryCommand()),
		"bench baseline-serve":      factory(baselineServeCommand()),
		"bench predict":             factory(benchPredictCommand()),
		"bench features":            factory(benchFeaturesCommand()),
	}
	for _, group := range []map[string]*command{aclCommands(), keyringCommands(), datasetsCommands(), jobsCommands(), runsCommands(), tuneCommands(), sourcesCommands(), featuresCommands(), pipelinesCommands(), monitoringCommands()} {
		for name, cmd := range group {
			c.Commands[name] = factory(cmd)
		}
	}
	code, err := c.Run()
	if err != nil {
		os.Stderr.WriteString("kiln: " + err.Error() + "\n")
		return 1
	}
	return code
}

func factory(cmd cli.Command) cli.CommandFactory {
	return func() (cli.Command, error) { return cmd, nil }
}

// command is a cli.Command built from a function.
type command struct {
	synopsis string
	help     string
	run      func(args []string) int
}

func (c *command) Help() string          { return c.help }
func (c *command) Synopsis() string      { return c.synopsis }
func (c *command) Run(args []string) int { return c.run(args) }

// groupCommand is a noun with subcommands; run alone it prints help.
func groupCommand(synopsis, usage string) *command {
	return &command{synopsis: synopsis, help: "Usage: " + usage, run: func([]string) int { return cli.RunResultHelp }}
}
