package main

import (
	"cmp"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
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

const statusHelp = `Usage: kiln status [-wait DURATION] [-address ADDR] [-format table|json]

  Show this node's view of the cluster.

  -wait DURATION  wait up to DURATION (e.g. 30s) for the node to answer
                  and know a leader, as a script does after starting agents;
                  exit 1 if it does not in time
  -address ADDR   node HTTP address (env KILN_ADDR)
  -format FMT     table or json`

// statusPoll is how often status -wait asks again; tests shorten it.
var statusPoll = 250 * time.Millisecond

func statusCommand() *command {
	return &command{synopsis: "Show this node's view of the cluster", help: statusHelp, run: func(args []string) int {
		fs, cf := newClientFlags("status")
		wait := fs.Duration("wait", 0, "")
		c, err := connect(fs, cf, args, 0, statusHelp)
		if err != nil {
			return fail(err)
		}
		deadline := time.Now().Add(*wait)
		var body map[string]any
		for {
			body = nil
			err = c.do("GET", "/v1/status", nil, &body)
			if err == nil && str(body["leader"]) != "" && str(body["leader"]) != "-" {
				break
			}
			if time.Now().After(deadline) {
				if err == nil && *wait > 0 {
					err = fmt.Errorf("the node at %s knows no leader after %s: are enough servers up for bootstrap_expect?", c.base, *wait)
				}
				break
			}
			time.Sleep(statusPoll)
		}
		if err != nil && body == nil {
			return fail(err)
		}
		if cf.format == "json" {
			printJSON(body)
		} else {
			keys := []string{"node_name", "node_id", "version", "raft_state", "leader", "term", "applied_index", "commit_index", "last_log_index", "last_contact_ms", "members", "voters", "http_addr", "rpc_addr", "onnx_runtime", "onnx_runtime_version"}
			var rows [][]string
			for _, k := range keys {
				rows = append(rows, []string{k, str(body[k])})
			}
			printTable([]string{"FIELD", "VALUE"}, rows)
		}
		if err != nil {
			return fail(err)
		}
		return 0
	}}
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

const nodesHelp = `Usage: kiln nodes [-v] [-address ADDR] [-format table|json]

  Lists registered nodes and their resources.

  -v              also list every GPU with what holds it: a training job
                  (job ID (NAME)), a serving replica (replica DEPLOYMENT
                  vVERSION (ALLOCATION)), or "-" when it is free; with
                  -format json they come as "gpus" next to the nodes
  -address ADDR   node HTTP address (env KILN_ADDR)
  -format FMT     table or json`

func nodesCommand() *command {
	return &command{synopsis: "List registered nodes and their resources", help: nodesHelp, run: func(args []string) int {
		fs, cf := newClientFlags("nodes")
		verbose := fs.Bool("v", false, "")
		c, err := connect(fs, cf, args, 0, nodesHelp)
		if err != nil {
			return fail(err)
		}
		var body map[string]any
		if err := c.do("GET", "/v1/nodes", nil, &body); err != nil {
			return fail(err)
		}
		var gpus []gpuHolding
		if *verbose {
			gpus = nodeGPUs(items(body))
		}
		if cf.format == "json" {
			if *verbose {
				body["gpus"] = gpus
			}
			printJSON(body)
			return 0
		}
		printTable(nodesTable(body))
		if len(gpus) > 0 {
			rows := make([][]string, len(gpus))
			for i, g := range gpus {
				rows[i] = []string{g.Node, strconv.Itoa(g.Index), dash(g.Model), formatBytes(float64(g.MemoryMB) * (1 << 20)), dash(g.HeldBy)}
			}
			fmt.Println()
			printTable([]string{"NODE", "INDEX", "MODEL", "MEMORY", "HELD_BY"}, rows)
		}
		return 0
	}}
}

func nodesTable(b map[string]any) ([]string, [][]string) {
	var rows [][]string
	for _, it := range items(b) {
		res, _ := it["resources"].(map[string]any)
		var g []string
		for _, gm := range asMaps(res["gpus"]) {
			g = append(g, fmt.Sprintf("%s:%s(%sMB)", str(gm["index"]), str(gm["model"]), str(gm["memory_mb"])))
		}
		rows = append(rows, []string{str(it["name"]), str(it["status"]), str(res["cpu_cores"]), str(res["memory_mb"]), dash(strings.Join(g, ",")), str(it["id"])})
	}
	return []string{"NAME", "STATUS", "CPU", "MEMORY_MB", "GPUS", "ID"}, rows
}

// gpuHolding is one GPU of a node and what holds it, as nodes -v shows it.
type gpuHolding struct {
	Node     string `json:"node"`
	NodeID   string `json:"node_id"`
	Index    int    `json:"index"`
	Model    string `json:"model"`
	MemoryMB int64  `json:"memory_mb"`
	// HeldBy is "" for a free GPU.
	HeldBy string `json:"held_by"`
}

// nodeGPUs lists every GPU of the nodes, in the nodes' order and by index,
// with what holds it as each node's use (GET /v1/nodes) says: the members
// of placed and running jobs and the replicas not failed, the ledger
// placement works from. A GPU held twice, which placement never does,
// shows both.
func nodeGPUs(nodes []map[string]any) []gpuHolding {
	out := []gpuHolding{}
	for _, n := range nodes {
		held := map[int]string{}
		use, _ := n["use"].(map[string]any)
		for _, u := range asMaps(use["gpus"]) {
			who := fmt.Sprintf("replica %s v%s (%s)", str(u["deployment"]), str(u["version"]), str(u["allocation"]))
			if u["job_id"] != nil {
				who = fmt.Sprintf("job %s (%s)", str(u["job_id"]), str(u["job_name"]))
			}
			i := int(num(u["index"]))
			if held[i] != "" {
				who = held[i] + ", " + who
			}
			held[i] = who
		}
		res, _ := n["resources"].(map[string]any)
		gpus := asMaps(res["gpus"])
		slices.SortStableFunc(gpus, func(a, b map[string]any) int { return cmp.Compare(num(a["index"]), num(b["index"])) })
		for _, g := range gpus {
			h := gpuHolding{Node: cmp.Or(str(n["name"]), str(n["id"])), NodeID: str(n["id"]), Index: int(num(g["index"])),
				Model: str(g["model"]), MemoryMB: int64(num(g["memory_mb"]))}
			h.HeldBy = held[h.Index]
			out = append(out, h)
		}
	}
	return out
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
