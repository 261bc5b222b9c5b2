package main

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
)

// simpleGet builds a client command that GETs a path and prints it.
func simpleGet(name, synopsis, usage, path string, table func(body map[string]any) ([]string, [][]string)) *command {
	return &command{
		synopsis: synopsis,
		help:     "Usage: " + usage + "\n\n  " + synopsis + ".\n\n  -address ADDR   node HTTP address (env KILN_ADDR)\n  -format FMT     table or json",
		run: func(args []string) int {
			fs, cf := newClientFlags(name)
			c, err := connect(fs, cf, args, 0, "Usage: "+usage)
			if err != nil {
				return fail(err)
			}
			var body map[string]any
			if err := c.do("GET", path, nil, &body); err != nil {
				return fail(err)
			}
			if cf.format == "json" {
				printJSON(body)
				return 0
			}
			printTable(table(body))
			return 0
		},
	}
}

func statusCommand() *command {
	return simpleGet("status", "Show this node's view of the cluster", "kiln status [-address ADDR] [-format table|json]", "/v1/status",
		func(b map[string]any) ([]string, [][]string) {
			keys := []string{"node_name", "node_id", "version", "raft_state", "leader", "term", "applied_index", "commit_index", "last_log_index", "last_contact_ms", "members", "voters", "http_addr", "rpc_addr"}
			var rows [][]string
			for _, k := range keys {
				rows = append(rows, []string{k, str(b[k])})
			}
			return []string{"FIELD", "VALUE"}, rows
		})
}

func membersCommand() *command {
	return simpleGet("members", "List gossip members and their status", "kiln members [-address ADDR] [-format table|json]", "/v1/members",
		func(b map[string]any) ([]string, [][]string) {
			var rows [][]string
			for _, it := range items(b) {
				rows = append(rows, []string{str(it["name"]), str(it["addr"]), str(it["status"]), str(it["id"]), str(it["http_addr"]), str(it["version"])})
			}
			return []string{"NAME", "ADDRESS", "STATUS", "ID", "HTTP", "VERSION"}, rows
		})
}

func nodesCommand() *command {
	return simpleGet("nodes", "List registered nodes and their resources", "kiln nodes [-address ADDR] [-format table|json]", "/v1/nodes",
		func(b map[string]any) ([]string, [][]string) {
			var rows [][]string
			for _, it := range items(b) {
				res, _ := it["resources"].(map[string]any)
				gpus, _ := res["gpus"].([]any)
				var g []string
				for _, x := range gpus {
					gm, _ := x.(map[string]any)
					g = append(g, fmt.Sprintf("%s:%s(%sMB)", str(gm["index"]), str(gm["model"]), str(gm["memory_mb"])))
				}
				gs := strings.Join(g, ",")
				if gs == "" {
					gs = "-"
				}
				rows = append(rows, []string{str(it["name"]), str(it["status"]), str(res["cpu_cores"]), str(res["memory_mb"]), gs, str(it["id"])})
			}
			return []string{"NAME", "STATUS", "CPU", "MEMORY_MB", "GPUS", "ID"}, rows
		})
}

func listPeersCommand() *command {
	return simpleGet("list-peers", "List Raft peers, their suffrage and the leader", "kiln operator raft list-peers [-address ADDR] [-format table|json]", "/v1/operator/raft/peers",
		func(b map[string]any) ([]string, [][]string) {
			var rows [][]string
			for _, it := range items(b) {
				state := "follower"
				if it["leader"] == true {
					state = "leader"
				}
				rows = append(rows, []string{str(it["name"]), str(it["id"]), str(it["address"]), state, str(it["voter"])})
			}
			return []string{"NODE", "ID", "ADDRESS", "STATE", "VOTER"}, rows
		})
}

func removePeerCommand() *command {
	usage := "Usage: kiln operator raft remove-peer [-address ADDR] ID\n\n  Removes a server from the Raft configuration (by node ID)."
	return &command{
		synopsis: "Remove a Raft peer by node ID",
		help:     usage,
		run: func(args []string) int {
			fs, cf := newClientFlags("remove-peer")
			c, err := connect(fs, cf, args, 1, usage)
			if err != nil {
				return fail(err)
			}
			if err := c.do("DELETE", "/v1/operator/raft/peers/"+url.PathEscape(fs.Arg(0)), nil, nil); err != nil {
				return fail(err)
			}
			fmt.Printf("Removed peer %s\n", fs.Arg(0))
			return 0
		},
	}
}

func items(b map[string]any) []map[string]any {
	raw, _ := b["items"].([]any)
	out := make([]map[string]any, 0, len(raw))
	for _, x := range raw {
		if m, ok := x.(map[string]any); ok {
			out = append(out, m)
		}
	}
	return out
}

// str renders a decoded JSON value for a table cell.
func str(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	case bool:
		return strconv.FormatBool(x)
	}
	return fmt.Sprint(v)
}
