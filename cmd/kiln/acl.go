package main

import (
	"fmt"
	"net/url"
	"os"
	"strings"
)

// The acl noun: bootstrap, policies and tokens (DESIGN.md §8).

const aclConnUsage = `
  Every acl command takes -address, -token (or KILN_TOKEN), -format, and the
  HTTPS flags -ca-cert, -client-cert, -client-key.`

func aclCommands() map[string]*command {
	return map[string]*command{
		"acl":               groupCommand("Manage access control: bootstrap, policies, tokens", "kiln acl <bootstrap|policy|token>"),
		"acl bootstrap":     aclBootstrapCommand(),
		"acl policy":        groupCommand("Manage ACL policies", "kiln acl policy <apply|list|get|delete>"),
		"acl policy apply":  aclPolicyApplyCommand(),
		"acl policy list":   aclPolicyListCommand(),
		"acl policy get":    aclPolicyGetCommand(),
		"acl policy delete": aclPolicyDeleteCommand(),
		"acl token":         groupCommand("Manage ACL tokens", "kiln acl token <create|list|self|delete>"),
		"acl token create":  aclTokenCreateCommand(),
		"acl token list":    aclTokenListCommand(),
		"acl token self":    aclTokenSelfCommand(),
		"acl token delete":  aclTokenDeleteCommand(),
	}
}

func aclBootstrapCommand() *command {
	usage := `Usage: kiln acl bootstrap

  Creates the cluster's first management token and prints its secret, once.
  A second bootstrap is refused; to bootstrap again after losing the token,
  write the reset index from the refusal into <data_dir>/acl-bootstrap-reset
  on the node you send the bootstrap to.` + aclConnUsage
	return &command{synopsis: "Create the first management token", help: usage, run: func(args []string) int {
		fs, cf := newClientFlags("acl bootstrap")
		c, err := connect(fs, cf, args, 0, usage)
		if err != nil {
			return fail(err)
		}
		var out map[string]any
		if err := c.do("POST", "/v1/acl/bootstrap", nil, &out); err != nil {
			return fail(err)
		}
		printToken(cf, out)
		return 0
	}}
}

func printToken(cf *clientFlags, t map[string]any) {
	if cf.format == "json" {
		printJSON(t)
		return
	}
	fmt.Printf("Accessor ID:  %s\n", str(t["accessor_id"]))
	if s := str(t["secret_id"]); s != "" {
		fmt.Printf("Secret ID:    %s\n", s)
	}
	fmt.Printf("Description:  %s\n", str(t["description"]))
	fmt.Printf("Policies:     %s\n", joinList(t["policies"]))
	if e := str(t["expiration_time"]); e != "" {
		fmt.Printf("Expires:      %s\n", e)
	}
	fmt.Printf("Created:      %s\n", str(t["created_at"]))
}

func joinList(v any) string {
	l, _ := v.([]any)
	parts := make([]string, 0, len(l))
	for _, x := range l {
		parts = append(parts, str(x))
	}
	return strings.Join(parts, ",")
}

func aclPolicyApplyCommand() *command {
	usage := `Usage: kiln acl policy apply [-description D] NAME FILE.hcl

  Creates or replaces a policy from a file of HCL rules, for example:

    model "fraud-*"   { policy = "read" }
    predict "fraud-*" { policy = "allow" }` + aclConnUsage
	return &command{synopsis: "Create or replace a policy", help: usage, run: func(args []string) int {
		fs, cf := newClientFlags("acl policy apply")
		desc := fs.String("description", "", "")
		c, err := connect(fs, cf, args, 2, usage)
		if err != nil {
			return fail(err)
		}
		rules, err := os.ReadFile(fs.Arg(1))
		if err != nil {
			return fail(err)
		}
		var out map[string]any
		body := map[string]any{"description": *desc, "rules": string(rules)}
		if err := c.do("PUT", "/v1/acl/policies/"+url.PathEscape(fs.Arg(0)), body, &out); err != nil {
			return fail(err)
		}
		if cf.format == "json" {
			printJSON(out)
		} else {
			fmt.Printf("Applied policy %s\n", fs.Arg(0))
		}
		return 0
	}}
}

func aclPolicyListCommand() *command {
	usage := "Usage: kiln acl policy list" + aclConnUsage
	return &command{synopsis: "List policies", help: usage, run: func(args []string) int {
		fs, cf := newClientFlags("acl policy list")
		c, err := connect(fs, cf, args, 0, usage)
		if err != nil {
			return fail(err)
		}
		var page map[string]any
		if err := c.do("GET", "/v1/acl/policies", nil, &page); err != nil {
			return fail(err)
		}
		if cf.format == "json" {
			printJSON(page)
			return 0
		}
		var rows [][]string
		for _, p := range items(page) {
			rows = append(rows, []string{str(p["name"]), str(p["description"]), str(p["modify_index"])})
		}
		printTable([]string{"NAME", "DESCRIPTION", "MODIFY_INDEX"}, rows)
		return 0
	}}
}

func aclPolicyGetCommand() *command {
	usage := "Usage: kiln acl policy get NAME" + aclConnUsage
	return &command{synopsis: "Show a policy and its rules", help: usage, run: func(args []string) int {
		fs, cf := newClientFlags("acl policy get")
		c, err := connect(fs, cf, args, 1, usage)
		if err != nil {
			return fail(err)
		}
		var p map[string]any
		if err := c.do("GET", "/v1/acl/policies/"+url.PathEscape(fs.Arg(0)), nil, &p); err != nil {
			return fail(err)
		}
		if cf.format == "json" {
			printJSON(p)
			return 0
		}
		fmt.Printf("Name:         %s\nDescription:  %s\nRules:\n%s\n", str(p["name"]), str(p["description"]), str(p["rules"]))
		return 0
	}}
}

func aclPolicyDeleteCommand() *command {
	usage := "Usage: kiln acl policy delete NAME" + aclConnUsage
	return &command{synopsis: "Delete a policy", help: usage, run: func(args []string) int {
		fs, cf := newClientFlags("acl policy delete")
		c, err := connect(fs, cf, args, 1, usage)
		if err != nil {
			return fail(err)
		}
		if err := c.do("DELETE", "/v1/acl/policies/"+url.PathEscape(fs.Arg(0)), nil, nil); err != nil {
			return fail(err)
		}
		fmt.Printf("Deleted policy %s\n", fs.Arg(0))
		return 0
	}}
}

func aclTokenCreateCommand() *command {
	usage := `Usage: kiln acl token create -policy P [-policy P2]... [-ttl 720h] [-description D]

  Creates a token and prints its secret. The secret is shown only here.` + aclConnUsage
	return &command{synopsis: "Create a token", help: usage, run: func(args []string) int {
		fs, cf := newClientFlags("acl token create")
		var policies stringList
		fs.Var(&policies, "policy", "")
		ttl := fs.String("ttl", "", "")
		desc := fs.String("description", "", "")
		c, err := connect(fs, cf, args, 0, usage)
		if err != nil {
			return fail(err)
		}
		if len(policies) == 0 {
			return fail(fmt.Errorf("-policy is required\n%s", usage))
		}
		var out map[string]any
		body := map[string]any{"description": *desc, "policies": []string(policies), "expiration_ttl": *ttl}
		if err := c.do("POST", "/v1/acl/tokens", body, &out); err != nil {
			return fail(err)
		}
		printToken(cf, out)
		return 0
	}}
}

func aclTokenListCommand() *command {
	usage := "Usage: kiln acl token list" + aclConnUsage
	return &command{synopsis: "List tokens by accessor ID", help: usage, run: func(args []string) int {
		fs, cf := newClientFlags("acl token list")
		c, err := connect(fs, cf, args, 0, usage)
		if err != nil {
			return fail(err)
		}
		var page map[string]any
		if err := c.do("GET", "/v1/acl/tokens", nil, &page); err != nil {
			return fail(err)
		}
		if cf.format == "json" {
			printJSON(page)
			return 0
		}
		var rows [][]string
		for _, t := range items(page) {
			rows = append(rows, []string{str(t["accessor_id"]), str(t["description"]), joinList(t["policies"]), str(t["expiration_time"])})
		}
		printTable([]string{"ACCESSOR_ID", "DESCRIPTION", "POLICIES", "EXPIRES"}, rows)
		return 0
	}}
}

func aclTokenSelfCommand() *command {
	usage := "Usage: kiln acl token self" + aclConnUsage
	return &command{synopsis: "Show the token in use", help: usage, run: func(args []string) int {
		fs, cf := newClientFlags("acl token self")
		c, err := connect(fs, cf, args, 0, usage)
		if err != nil {
			return fail(err)
		}
		var out map[string]any
		if err := c.do("GET", "/v1/acl/token/self", nil, &out); err != nil {
			return fail(err)
		}
		printToken(cf, out)
		return 0
	}}
}

func aclTokenDeleteCommand() *command {
	usage := "Usage: kiln acl token delete ACCESSOR_ID" + aclConnUsage
	return &command{synopsis: "Delete a token", help: usage, run: func(args []string) int {
		fs, cf := newClientFlags("acl token delete")
		c, err := connect(fs, cf, args, 1, usage)
		if err != nil {
			return fail(err)
		}
		if err := c.do("DELETE", "/v1/acl/tokens/"+url.PathEscape(fs.Arg(0)), nil, nil); err != nil {
			return fail(err)
		}
		fmt.Printf("Deleted token %s\n", fs.Arg(0))
		return 0
	}}
}
