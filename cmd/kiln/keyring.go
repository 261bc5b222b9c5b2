package main

import (
	"fmt"
)

// kiln operator gossip keyring: rotate the gossip encryption key with no
// downtime (install the new key, use it, remove the old one).

func keyringCommands() map[string]*command {
	return map[string]*command{
		"operator gossip":                 groupCommand("Manage gossip encryption", "kiln operator gossip keyring <list|install|use|remove>"),
		"operator gossip keyring":         groupCommand("Rotate the gossip encryption key", "kiln operator gossip keyring <list|install|use|remove>"),
		"operator gossip keyring list":    keyringCommand("list", "GET", "List the gossip keys on every node", 0),
		"operator gossip keyring install": keyringCommand("install", "POST", "Install a gossip key on every node", 1),
		"operator gossip keyring use":     keyringCommand("use", "PUT", "Make an installed key the primary on every node", 1),
		"operator gossip keyring remove":  keyringCommand("remove", "DELETE", "Remove a gossip key from every node", 1),
	}
}

func keyringCommand(verb, method, synopsis string, nargs int) *command {
	usage := fmt.Sprintf(`Usage: kiln operator gossip keyring %s`, verb)
	if nargs == 1 {
		usage += " KEY"
	}
	usage += `

  ` + synopsis + `. To rotate: install the new key, use it, then remove the
  old one; each step runs on every alive node and fails naming any node that
  did not apply it. KEY is 32 bytes, base64 (head -c 32 /dev/urandom | base64).`
	return &command{synopsis: synopsis, help: usage, run: func(args []string) int {
		fs, cf := newClientFlags("operator gossip keyring " + verb)
		c, err := connect(fs, cf, args, nargs, usage)
		if err != nil {
			return fail(err)
		}
		var body any
		if nargs == 1 {
			body = map[string]string{"key": fs.Arg(0)}
		}
		var out map[string]any
		if err := c.do(method, "/v1/operator/keyring", body, &out); err != nil {
			return fail(err)
		}
		if cf.format == "json" {
			printJSON(out)
			return 0
		}
		if verb != "list" {
			fmt.Printf("Keyring %s done on %d node(s)\n", verb, len(asList(out["nodes"])))
			return 0
		}
		var rows [][]string
		for _, k := range asList(out["keys"]) {
			m, _ := k.(map[string]any)
			rows = append(rows, []string{str(m["key"]), str(m["installed"]), str(m["primary"])})
		}
		printTable([]string{"KEY", "INSTALLED_ON", "PRIMARY_ON"}, rows)
		return 0
	}}
}

func asList(v any) []any {
	l, _ := v.([]any)
	return l
}
