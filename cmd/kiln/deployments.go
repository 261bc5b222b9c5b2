package main

import (
	"errors"
	"fmt"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
)

// trafficSplit, batchingSpec, resourcesSpec and deploymentSpec are the body of
// PUT /v1/deployments/NAME.
type trafficSplit struct {
	Version uint64 `json:"version"`
	Weight  int    `json:"weight"`
}

type batchingSpec struct {
	MaxBatch  int `json:"max_batch"`
	MaxWaitMS int `json:"max_wait_ms"`
}

type resourcesSpec struct {
	MemoryMB int64 `json:"memory_mb"`
	GPUs     int   `json:"gpus"`
	Threads  int   `json:"threads,omitempty"`
}

type deploymentSpec struct {
	Versions  []trafficSplit `json:"versions"`
	Shadow    uint64         `json:"shadow,omitempty"`
	Replicas  int            `json:"replicas"`
	Batching  *batchingSpec  `json:"batching,omitempty"`
	Resources *resourcesSpec `json:"resources,omitempty"`
	TimeoutMS int64          `json:"timeout_ms,omitempty"`
}

const deployHelp = `Usage: kiln deploy [flags] NAME

  Serves model NAME: creates its deployment or replaces its spec. The
  previous traffic split is kept, so "kiln deployments rollback NAME" can
  restore it.

  -version N        the main version (required); it takes the traffic the
                    canaries leave
  -canary V:W       send W percent of requests to version V (repeatable);
                    the weights must add up to less than 100
  -shadow V         copy every request to version V and discard its answers
  -replicas N       replicas of each version (default 1)
  -max-batch N      merge up to N concurrent requests into one model call
  -max-wait-ms N    wait up to N ms for a batch to fill
  -memory-mb N      memory per replica, on top of the model file's size
  -gpus N           whole GPUs per replica
  -threads N        ONNX Runtime intra-op threads per replica (default 1)
  -timeout DURATION bound one prediction on the server (e.g. 5s; default:
                    the node's serving.predict_timeout, 30s)
  -wait DURATION    wait until every version has its replicas running (e.g. 60s)
  -address ADDR     node HTTP address (env KILN_ADDR)
  -format FMT       table or json`

func deployCommand() *command {
	return &command{synopsis: "Deploy model versions with a traffic split", help: deployHelp, run: runDeploy}
}

func runDeploy(args []string) int {
	fs, cf := newClientFlags("deploy")
	version := fs.Uint64("version", 0, "")
	shadow := fs.Uint64("shadow", 0, "")
	replicas := fs.Int("replicas", 1, "")
	maxBatch := fs.Int("max-batch", 0, "")
	maxWait := fs.Int("max-wait-ms", 0, "")
	memoryMB := fs.Int64("memory-mb", 0, "")
	gpus := fs.Int("gpus", 0, "")
	threads := fs.Int("threads", 0, "")
	wait := fs.Duration("wait", 0, "")
	timeout := fs.Duration("timeout", 0, "")
	var canaries stringList
	fs.Var(&canaries, "canary", "")
	c, err := connect(fs, cf, args, 1, deployHelp)
	if err != nil {
		return fail(err)
	}
	versions, err := trafficFromFlags(*version, canaries)
	if err != nil {
		return fail(err)
	}
	if *replicas < 1 {
		return fail(fmt.Errorf("-replicas must be at least 1, not %d", *replicas))
	}
	if *timeout < 0 || (*timeout > 0 && *timeout < time.Millisecond) {
		return fail(fmt.Errorf("-timeout must be at least 1ms, not %s", *timeout))
	}
	spec := deploymentSpec{Versions: versions, Shadow: *shadow, Replicas: *replicas, TimeoutMS: timeout.Milliseconds()}
	if isFlagSet(fs, "max-batch") || isFlagSet(fs, "max-wait-ms") {
		spec.Batching = &batchingSpec{MaxBatch: *maxBatch, MaxWaitMS: *maxWait}
	}
	if isFlagSet(fs, "memory-mb") || isFlagSet(fs, "gpus") || isFlagSet(fs, "threads") {
		spec.Resources = &resourcesSpec{MemoryMB: *memoryMB, GPUs: *gpus, Threads: *threads}
	}
	var d map[string]any
	if err := c.do("PUT", "/v1/deployments/"+url.PathEscape(fs.Arg(0)), spec, &d); err != nil {
		return fail(err)
	}
	if *wait > 0 {
		if d, err = waitRunning(c, fs.Arg(0), *wait); err != nil {
			return fail(err)
		}
	}
	if cf.format == "json" {
		printJSON(d)
		return 0
	}
	printTable(deploymentHeaders, [][]string{deploymentRow(d)})
	return 0
}

// waitRunning polls the deployment (consistently, so it sees the write just
// made) until every served version has its replicas running, or the time
// is up.
func waitRunning(c *client, name string, limit time.Duration) (map[string]any, error) {
	deadline := time.Now().Add(limit)
	for {
		var d map[string]any
		if err := c.do("GET", "/v1/deployments/"+url.PathEscape(name)+"?consistency=consistent", nil, &d); err != nil {
			return nil, err
		}
		want, running := replicasWanted(d)
		missing := 0
		for v, n := range want {
			missing += max(n-running[v], 0)
		}
		if missing == 0 {
			return d, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("deployment %s: %d replica(s) not running after %s", name, missing, limit)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// replicasWanted reads, per served version, how many replicas the deployment
// asks for and how many run.
func replicasWanted(d map[string]any) (want, running map[string]int) {
	want, running = map[string]int{}, map[string]int{}
	n := int(num(d["replicas"]))
	traffic, _ := d["traffic"].(map[string]any)
	versions, _ := traffic["versions"].([]any)
	for _, x := range versions {
		if v, ok := x.(map[string]any); ok {
			want[fmt.Sprint(num(v["version"]))] = n
		}
	}
	if s := num(traffic["shadow"]); s > 0 {
		want[fmt.Sprint(s)] = n
	}
	states, _ := d["replica_states"].([]any)
	for _, x := range states {
		if r, ok := x.(map[string]any); ok && r["state"] == "running" {
			running[fmt.Sprint(num(r["version"]))]++
		}
	}
	return want, running
}

// trafficFromFlags splits traffic between the main version and canaries
// given as V:W percentages; the main version gets what is left of 100.
func trafficFromFlags(main uint64, canaries []string) ([]trafficSplit, error) {
	if main == 0 {
		return nil, errors.New("-version is required: the version that takes the main traffic")
	}
	seen := map[uint64]bool{main: true}
	var splits []trafficSplit
	total := 0
	for _, cn := range canaries {
		vs, ws, ok := strings.Cut(cn, ":")
		v, verr := strconv.ParseUint(vs, 10, 64)
		w, werr := strconv.Atoi(ws)
		if !ok || verr != nil || werr != nil || v == 0 {
			return nil, fmt.Errorf("-canary %q must be VERSION:WEIGHT, e.g. 4:10", cn)
		}
		if w < 1 || w > 99 {
			return nil, fmt.Errorf("-canary %q: the weight is a percentage from 1 to 99", cn)
		}
		if seen[v] {
			return nil, fmt.Errorf("-canary %q: version %d is already in the traffic split", cn, v)
		}
		seen[v] = true
		total += w
		splits = append(splits, trafficSplit{Version: v, Weight: w})
	}
	if total >= 100 {
		return nil, fmt.Errorf("-canary weights add up to %d%%; they must add up to less than 100 so that version %d keeps some traffic", total, main)
	}
	return append([]trafficSplit{{Version: main, Weight: 100 - total}}, splits...), nil
}

var deploymentHeaders = []string{"NAME", "TRAFFIC", "SHADOW", "REPLICAS", "BATCHING", "RESOURCES", "UPDATED"}

// deploymentRow renders a deployment for tables.
func deploymentRow(d map[string]any) []string {
	traffic, _ := d["traffic"].(map[string]any)
	b, _ := d["batching"].(map[string]any)
	batching := "-"
	if num(b["max_batch"]) > 0 {
		batching = fmt.Sprintf("%s/%sms", str(b["max_batch"]), str(b["max_wait_ms"]))
	}
	r, _ := d["resources"].(map[string]any)
	var res []string
	if num(r["memory_mb"]) > 0 {
		res = append(res, str(r["memory_mb"])+"MB")
	}
	if num(r["gpus"]) > 0 {
		res = append(res, str(r["gpus"])+" GPU")
	}
	shadow := "-"
	if num(traffic["shadow"]) > 0 {
		shadow = str(traffic["shadow"])
	}
	return []string{str(d["name"]), trafficText(traffic), shadow, str(d["replicas"]), batching, dash(strings.Join(res, ",")), str(d["updated_at"])}
}

// trafficText renders a traffic split as VERSION:WEIGHT pairs, the -canary
// syntax.
func trafficText(traffic map[string]any) string {
	var parts []string
	for _, s := range asMaps(traffic["versions"]) {
		parts = append(parts, str(s["version"])+":"+str(s["weight"]))
	}
	return dash(strings.Join(parts, ","))
}

func deploymentsListCommand() *command {
	usage := "Usage: kiln deployments list [-address ADDR] [-format table|json]\n\n  Lists deployments and their traffic."
	return &command{synopsis: "List deployments", help: usage, run: func(args []string) int {
		fs, cf := newClientFlags("deployments list")
		c, err := connect(fs, cf, args, 0, usage)
		if err != nil {
			return fail(err)
		}
		return printList(c, cf, "/v1/deployments", deploymentHeaders, deploymentRow)
	}}
}

func deploymentsGetCommand() *command {
	usage := "Usage: kiln deployments get [-address ADDR] [-format table|json] NAME\n\n  Shows a deployment's traffic and each replica's node, state and load."
	return &command{synopsis: "Show a deployment and its replicas", help: usage, run: func(args []string) int {
		fs, cf := newClientFlags("deployments get")
		c, err := connect(fs, cf, args, 1, usage)
		if err != nil {
			return fail(err)
		}
		var d map[string]any
		if err := c.do("GET", "/v1/deployments/"+url.PathEscape(fs.Arg(0)), nil, &d); err != nil {
			return fail(err)
		}
		if cf.format == "json" {
			printJSON(d)
			return 0
		}
		row := deploymentRow(d)
		fmt.Printf("Deployment %s: traffic %s, shadow %s, %s replica(s) per version, batching %s\n", row[0], row[1], row[2], row[3], row[4])
		if unplaced, _ := d["unplaced"].(map[string]any); len(unplaced) > 0 {
			keys := make([]string, 0, len(unplaced))
			for k := range unplaced {
				keys = append(keys, k)
			}
			sort.Slice(keys, func(i, j int) bool {
				a, _ := strconv.ParseUint(keys[i], 10, 64)
				b, _ := strconv.ParseUint(keys[j], 10, 64)
				return a < b
			})
			var parts []string
			for _, k := range keys {
				// {"replicas": N, "reason": "..."}; a bare count from an older agent.
				count, reason := unplaced[k], ""
				if u, ok := unplaced[k].(map[string]any); ok {
					count, reason = u["replicas"], str(u["reason"])
				}
				part := fmt.Sprintf("version %s: %s", k, str(count))
				if reason != "" {
					part += " (" + reason + ")"
				}
				parts = append(parts, part)
			}
			fmt.Printf("Unplaced replicas (no node fits): %s\n", strings.Join(parts, ", "))
		}
		fmt.Println()
		var rows [][]string
		for _, r := range asMaps(d["replica_states"]) {
			node := str(r["node_name"])
			if node == "" {
				node = str(r["node_id"])
			}
			rows = append(rows, []string{
				str(r["id"]), str(r["version"]), dash(node), str(r["state"]),
				load(r["in_flight"]), load(r["served"]), dash(str(r["message"])),
			})
		}
		printTable([]string{"ID", "VERSION", "NODE", "STATE", "IN_FLIGHT", "SERVED", "MESSAGE"}, rows)
		return 0
	}}
}

// load renders a replica's counter; the server sends -1 when the replica
// could not be asked.
func load(v any) string {
	if f, ok := v.(float64); !ok || f < 0 {
		return "-"
	}
	return str(v)
}

func deploymentsRollbackCommand() *command {
	usage := "Usage: kiln deployments rollback [-address ADDR] [-format table|json] NAME\n\n  Restores the deployment's previous traffic split."
	return &command{synopsis: "Restore a deployment's previous traffic", help: usage, run: func(args []string) int {
		fs, cf := newClientFlags("deployments rollback")
		c, err := connect(fs, cf, args, 1, usage)
		if err != nil {
			return fail(err)
		}
		var d map[string]any
		if err := c.do("POST", "/v1/deployments/"+url.PathEscape(fs.Arg(0))+"/rollback", nil, &d); err != nil {
			return fail(err)
		}
		if cf.format == "json" {
			printJSON(d)
			return 0
		}
		printTable(deploymentHeaders, [][]string{deploymentRow(d)})
		return 0
	}}
}

func deploymentsDeleteCommand() *command {
	usage := "Usage: kiln deployments delete [-address ADDR] NAME\n\n  Stops serving the model: removes its deployment and replicas."
	return &command{synopsis: "Delete a deployment", help: usage, run: func(args []string) int {
		fs, cf := newClientFlags("deployments delete")
		c, err := connect(fs, cf, args, 1, usage)
		if err != nil {
			return fail(err)
		}
		if err := c.do("DELETE", "/v1/deployments/"+url.PathEscape(fs.Arg(0)), nil, nil); err != nil {
			return fail(err)
		}
		fmt.Printf("Deleted deployment %s\n", fs.Arg(0))
		return 0
	}}
}
