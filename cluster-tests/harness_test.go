package clustertest

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/kilnml/kiln/cluster-tests/testutil"
)

// Timeouts the harness waits with. They are generous: the whole package runs on
// two cores next to three or four agents.
const (
	startTimeout  = 20 * time.Second // process up and answering HTTP
	leaderTimeout = 30 * time.Second // a leader everyone agrees on
	stopTimeout   = 30 * time.Second // SIGTERM to exit (a leave can wait ~7s for a leader)
	pollInterval  = 100 * time.Millisecond
)

// holdsFor polls cond for the whole of d and fails the test the first time it
// returns an error: for "this must not happen" checks.
func holdsFor(t testing.TB, d time.Duration, cond func() error) {
	t.Helper()
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(pollInterval) {
		if err := cond(); err != nil {
			t.Fatalf("stopped holding: %v", err)
		}
	}
}

// IPs: each node binds its own loopback IP with the default ports.
const firstIP, lastIP = 60, 250

var (
	ipMu   sync.Mutex
	ipNext = firstIP // guarded by ipMu
)

// allocIP returns the next loopback IP whose ports are free, wrapping around.
func allocIP(t testing.TB) string {
	t.Helper()
	ipMu.Lock()
	defer ipMu.Unlock()
	for range lastIP - firstIP + 1 {
		ip := fmt.Sprintf("127.0.0.%d", ipNext)
		ipNext++
		if ipNext > lastIP {
			ipNext = firstIP
		}
		if portsFree(ip) {
			return ip
		}
	}
	t.Fatalf("no free loopback IP in 127.0.0.%d-%d", firstIP, lastIP)
	return ""
}

func portsFree(ip string) bool {
	for _, p := range []string{"7070", "7071", "7072", "7073"} {
		ln, err := net.Listen("tcp", net.JoinHostPort(ip, p))
		if err != nil {
			return false
		}
		ln.Close()
	}
	pc, err := net.ListenPacket("udp", net.JoinHostPort(ip, "7072"))
	if err != nil {
		return false
	}
	pc.Close()
	return true
}

// baseHCL is every node's first config file; a test's own HCL goes in a second
// file, which the agent layers on top (so a test may also set raft keys).
const baseHCL = `node_name        = %q
data_dir         = %q
bind_addr        = %q
bootstrap_expect = %d
retry_join       = [%s]
retry_interval   = "200ms"
enable_debug     = true
log_level        = "info"

raft {
  server_stabilization_time = "1s"
}
`

// cluster is a set of kiln agents started by one test.
type cluster struct {
	t   testing.TB
	dir string
	hcl string // extra HCL for every node
	// acl is set by withACL: newCluster bootstraps the ACLs and token is the
	// management secret that every harness request then carries.
	acl   bool
	token string
	// nodeHCL[i] is added to the config of node i+1 alone (withNodeHCL).
	nodeHCL []string
	// bootstraps are the answers of the racing bootstrap requests, one per
	// node, that newCluster sent (withACL).
	bootstraps []*response
	// https is set by withHTTPS: the harness and the CLI speak HTTPS with a
	// client certificate; httpsClient is the harness's client for it.
	https       *httpsFiles
	httpsClient *http.Client
	mu          sync.Mutex
	nodes       []*node // guarded by mu
}

type clusterOption func(*cluster)

// withHCL adds HCL to every node's config (in a second file, so blocks merge).
func withHCL(hcl string) clusterOption {
	return func(c *cluster) { c.hcl += hcl + "\n" }
}

// withNodeHCL adds hcl[i] to the config of the i-th node newCluster starts.
func withNodeHCL(hcl ...string) clusterOption {
	return func(c *cluster) { c.nodeHCL = hcl }
}

// newCluster starts n agents that bootstrap together (bootstrap_expect = n) and
// waits until they agree on a leader and every node sees n voters. Everything it
// starts is killed when the test ends.
func newCluster(t testing.TB, n int, opts ...clusterOption) *cluster {
	t.Helper()
	c := emptyCluster(t, opts...)
	ips := make([]string, n)
	for i := range ips {
		ips[i] = allocIP(t)
	}
	for i := range n {
		extra := ""
		if i < len(c.nodeHCL) {
			extra = c.nodeHCL[i]
		}
		c.newNode(fmt.Sprintf("n%d", i+1), ips[i], n, ips, extra)
	}
	for _, nd := range c.all() {
		nd.start()
	}
	if c.acl {
		c.bootstrapACL()
	}
	for _, nd := range c.all() {
		nd.waitUp()
	}
	c.waitLeader(leaderTimeout)
	c.waitVoters(n, leaderTimeout)
	return c
}

// emptyCluster is a cluster with no nodes yet, for tests that start nodes one by
// one with newNode.
func emptyCluster(t testing.TB, opts ...clusterOption) *cluster {
	c := &cluster{t: t, dir: t.TempDir()}
	for _, o := range opts {
		o(c)
	}
	t.Cleanup(c.cleanup)
	return c
}

// addNode starts one more agent that joins the running cluster (no bootstrap);
// nodeHCL is added to its config alone.
func (c *cluster) addNode(nodeHCL string) *node {
	c.t.Helper()
	var join []string
	for _, nd := range c.all() {
		join = append(join, nd.ip)
	}
	nd := c.newNode(fmt.Sprintf("n%d", len(c.all())+1), allocIP(c.t), 0, join, nodeHCL)
	nd.start()
	nd.waitUp()
	return nd
}

// newNode writes a node's configs (bootstrap_expect = expect, retry_join = join)
// without starting it.
func (c *cluster) newNode(name, ip string, expect int, join []string, nodeHCL string) *node {
	c.t.Helper()
	nd := &node{c: c, t: c.t, name: name, ip: ip, dir: filepath.Join(c.dir, name)}
	if err := os.MkdirAll(nd.dir, 0o750); err != nil {
		c.t.Fatal(err)
	}
	quoted := make([]string, len(join))
	for i, j := range join {
		quoted[i] = strconv.Quote(j)
	}
	files := map[string]string{
		"base.hcl": fmt.Sprintf(baseHCL, name, filepath.Join(nd.dir, "data"), ip, expect, strings.Join(quoted, ", ")),
		"test.hcl": c.hcl,
		"node.hcl": nodeHCL,
	}
	for _, f := range []string{"base.hcl", "test.hcl", "node.hcl"} {
		path := filepath.Join(nd.dir, f)
		if err := os.WriteFile(path, []byte(files[f]), 0o640); err != nil {
			c.t.Fatal(err)
		}
		nd.configs = append(nd.configs, path)
	}
	c.mu.Lock()
	c.nodes = append(c.nodes, nd)
	c.mu.Unlock()
	return nd
}

// cleanup kills every process still running and, if the test failed, prints the
// end of each node's log.
func (c *cluster) cleanup() {
	for _, nd := range c.all() {
		nd.mu.Lock()
		exits := nd.unexpectedExits
		nd.mu.Unlock()
		for _, e := range exits {
			c.t.Errorf("%s exited during the test: %s", nd.name, e)
		}
		nd.killQuietly()
	}
	if !c.t.Failed() {
		return
	}
	for _, nd := range c.all() {
		c.t.Logf("---- %s (%s) log, last lines: %s\n%s", nd.name, nd.ip, nd.logPath(), nd.logTail(60))
	}
}

func (c *cluster) all() []*node {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.nodes)
}

// running returns the nodes whose process is up.
func (c *cluster) running() []*node {
	var out []*node
	for _, nd := range c.all() {
		if nd.running() {
			out = append(out, nd)
		}
	}
	return out
}

// others returns the running nodes other than the given ones.
func (c *cluster) others(not ...*node) []*node {
	var out []*node
	for _, nd := range c.running() {
		if !slices.Contains(not, nd) {
			out = append(out, nd)
		}
	}
	return out
}

func (c *cluster) byID(id string) *node {
	for _, nd := range c.all() {
		if nd.id == id {
			return nd
		}
	}
	return nil
}

// waitLeader waits until every running node names the same leader, which says it
// is the leader, and returns it.
func (c *cluster) waitLeader(timeout time.Duration) *node {
	c.t.Helper()
	return c.waitLeaderAmong(timeout, c.running()...)
}

// waitLeaderAmong is waitLeader over a subset of nodes (e.g. a partition's
// majority); the leader must be one of them.
func (c *cluster) waitLeaderAmong(timeout time.Duration, nodes ...*node) *node {
	c.t.Helper()
	var leader *node
	testutil.WaitFor(c.t, timeout, func() error {
		leader = nil
		var id string
		for _, nd := range nodes {
			st, err := nd.status()
			if err != nil {
				return err
			}
			if st.LeaderID == "" {
				return fmt.Errorf("%s knows no leader (state %s)", nd.name, st.RaftState)
			}
			if id != "" && st.LeaderID != id {
				return fmt.Errorf("nodes disagree on the leader: %s vs %s", id, st.LeaderID)
			}
			id = st.LeaderID
		}
		l := c.byID(id)
		if l == nil || !slices.Contains(nodes, l) {
			return fmt.Errorf("leader %s is not among the nodes waited on", id)
		}
		st, err := l.status()
		if err != nil {
			return err
		}
		if st.RaftState != "Leader" {
			return fmt.Errorf("%s is named leader but is %s", l.name, st.RaftState)
		}
		leader = l
		return nil
	})
	return leader
}

// waitVoters waits until every running node's Raft configuration has exactly n
// voters.
func (c *cluster) waitVoters(n int, timeout time.Duration) {
	c.t.Helper()
	testutil.WaitFor(c.t, timeout, func() error {
		for _, nd := range c.running() {
			st, err := nd.status()
			if err != nil {
				return err
			}
			if st.Voters != n {
				return fmt.Errorf("%s sees %d voters, want %d", nd.name, st.Voters, n)
			}
		}
		return nil
	})
}

// node is one agent: its config, data dir and log survive restarts.
type node struct {
	c       *cluster
	t       testing.TB
	name    string
	ip      string
	dir     string   // configs, data dir and log
	configs []string // -config files, in order
	id      string   // Raft/node ID, learnt from /v1/status once up

	mu              sync.Mutex
	proc            *process // guarded by mu: the current or last process
	unexpectedExits []string // guarded by mu: exits the test did not cause
}

// process is one run of `kiln agent`.
type process struct {
	cmd      *exec.Cmd
	done     chan struct{} // closed when the process has exited and been reaped
	err      error         // Wait's result; read only after done is closed
	signaled atomic.Bool   // the harness sent it SIGKILL or SIGTERM
}

// signal sends sig and notes that the harness asked for the exit.
func (p *process) signal(sig syscall.Signal) error {
	p.signaled.Store(true)
	return p.cmd.Process.Signal(sig)
}

// exitReason describes how the process ended, calling out an exit nobody in
// the test asked for (a crash, or a kill from outside the test).
func (p *process) exitReason() string {
	if p.signaled.Load() {
		return p.err.Error()
	}
	return fmt.Sprintf("%v, which the test did not cause: a crash, or a signal from another process", p.err)
}

func (nd *node) httpAddr() string { return net.JoinHostPort(nd.ip, "7070") }
func (nd *node) rpcAddr() string  { return net.JoinHostPort(nd.ip, "7071") }
func (nd *node) logPath() string  { return filepath.Join(nd.dir, "agent.log") }
func (nd *node) dataDir() string  { return filepath.Join(nd.dir, "data") }

// start launches the agent; it does not wait for it to be up.
func (nd *node) start() {
	nd.t.Helper()
	nd.mu.Lock()
	defer nd.mu.Unlock()
	if nd.proc != nil && !nd.proc.exited() {
		nd.t.Fatalf("%s is already running", nd.name)
	}
	logf, err := os.OpenFile(nd.logPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		nd.t.Fatal(err)
	}
	defer logf.Close() // the child has its own descriptor
	fmt.Fprintf(logf, "==== clustertest: starting %s at %s\n", nd.name, time.Now().Format(time.RFC3339Nano))
	args := []string{"agent"}
	for _, f := range nd.configs {
		args = append(args, "-config", f)
	}
	cmd := exec.Command(kilnBinary(), args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := startProcess(cmd); err != nil {
		nd.t.Fatalf("start %s: %v", nd.name, err)
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	trackProcess(p, nd.name)
	go func() {
		p.err = cmd.Wait()
		if p.err == nil {
			p.err = errors.New("exit status 0")
		}
		if !p.signaled.Load() {
			nd.mu.Lock()
			nd.unexpectedExits = append(nd.unexpectedExits, p.exitReason())
			nd.mu.Unlock()
			if f, err := os.OpenFile(nd.logPath(), os.O_WRONLY|os.O_APPEND, 0); err == nil {
				fmt.Fprintf(f, "==== clustertest: %s exited at %s: %s\n", nd.name, time.Now().Format(time.RFC3339Nano), p.exitReason())
				f.Close()
			}
		}
		untrackProcess(p)
		close(p.done)
	}()
	nd.proc = p
}

// waitUp waits until the agent answers /v1/status and records its ID.
func (nd *node) waitUp() {
	nd.t.Helper()
	testutil.WaitFor(nd.t, startTimeout, func() error {
		st, err := nd.status()
		if err != nil {
			return err
		}
		nd.id = st.NodeID
		return nil
	})
}

// restart starts the agent again on the same configs and data dir and waits
// until it answers HTTP.
func (nd *node) restart() {
	nd.t.Helper()
	nd.start()
	nd.waitUp()
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func (nd *node) current() *process {
	nd.mu.Lock()
	defer nd.mu.Unlock()
	return nd.proc
}

func (nd *node) running() bool {
	p := nd.current()
	return p != nil && !p.exited()
}

func (nd *node) pid() int {
	if p := nd.current(); p != nil {
		return p.cmd.Process.Pid
	}
	return 0
}

// kill sends SIGKILL and waits until the process is gone.
func (nd *node) kill() {
	nd.t.Helper()
	p := nd.current()
	if p == nil || p.exited() {
		nd.t.Fatalf("kill %s: not running", nd.name)
	}
	nd.killQuietly()
}

func (nd *node) killQuietly() {
	p := nd.current()
	if p == nil {
		return
	}
	_ = p.signal(syscall.SIGKILL)
	<-p.done
}

// stop sends SIGTERM (graceful leave) and returns the exit code. A node that
// does not exit within stopTimeout is killed and the test fails.
func (nd *node) stop() int {
	nd.t.Helper()
	p := nd.current()
	if p == nil || p.exited() {
		nd.t.Fatalf("stop %s: not running", nd.name)
	}
	if err := p.signal(syscall.SIGTERM); err != nil {
		nd.t.Fatalf("stop %s: %v", nd.name, err)
	}
	select {
	case <-p.done:
	case <-time.After(stopTimeout):
		nd.killQuietly()
		nd.t.Fatalf("%s did not exit within %s of SIGTERM", nd.name, stopTimeout)
	}
	return p.cmd.ProcessState.ExitCode()
}

// logTail returns the last n lines of the node's log.
func (nd *node) logTail(n int) string {
	b, err := os.ReadFile(nd.logPath())
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func (nd *node) logContains(s string) bool {
	b, err := os.ReadFile(nd.logPath())
	return err == nil && bytes.Contains(b, []byte(s))
}

// Every started process is tracked until reaped, so TestMain can tell when one
// outlived its test.
var (
	liveMu    sync.Mutex
	liveProcs = map[*process]string{} // guarded by liveMu: process -> node name
)

func trackProcess(p *process, name string) {
	liveMu.Lock()
	liveProcs[p] = name
	liveMu.Unlock()
}

func untrackProcess(p *process) {
	liveMu.Lock()
	delete(liveProcs, p)
	liveMu.Unlock()
}

// killLeftovers kills and reaps processes that are still tracked and names them.
func killLeftovers() []string {
	liveMu.Lock()
	var left []*process
	var names []string
	for p, name := range liveProcs {
		left = append(left, p)
		names = append(names, fmt.Sprintf("%s (pid %d)", name, p.cmd.Process.Pid))
	}
	liveMu.Unlock()
	for _, p := range left {
		_ = p.signal(syscall.SIGKILL)
		<-p.done
	}
	return names
}

// HTTP.

// httpClient has no keep-alives: nodes are killed and restarted under it, and a
// pooled connection to a dead process would fail a non-idempotent request.
var httpClient = &http.Client{
	Timeout:   30 * time.Second,
	Transport: &http.Transport{DisableKeepAlives: true},
}

// response is a finished HTTP exchange.
type response struct {
	status int
	header http.Header
	body   []byte
}

// index is the X-Kiln-Index header.
func (r *response) index() uint64 {
	v, _ := strconv.ParseUint(r.header.Get("X-Kiln-Index"), 10, 64)
	return v
}

// apiError is the JSON error body.
type apiError struct {
	Error string `json:"error"`
	Code  string `json:"code"`
}

func (r *response) errorCode() string {
	var e apiError
	_ = json.Unmarshal(r.body, &e)
	return e.Code
}

func (r *response) String() string {
	return fmt.Sprintf("HTTP %d %s", r.status, bytes.TrimSpace(r.body))
}

// do sends a request with an optional JSON body to the node.
// rawBody is a request body sent as it is, not encoded as JSON: for
// malformed requests.
type rawBody []byte

func (nd *node) do(ctx context.Context, method, path string, body any) (*response, error) {
	var rd io.Reader
	if raw, ok := body.(rawBody); ok {
		rd = bytes.NewReader(raw)
	} else if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, nd.baseURL()+path, rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if tok, ok := ctx.Value(tokenKey{}).(string); ok {
		if tok != "" {
			req.Header.Set("X-Kiln-Token", tok)
		}
	} else if nd.c.token != "" {
		req.Header.Set("X-Kiln-Token", nd.c.token)
	}
	resp, err := nd.c.client().Do(req)
	if err != nil {
		if p := nd.current(); p != nil && p.exited() {
			return nil, fmt.Errorf("%s has exited (%s): %w", nd.name, p.exitReason(), err)
		}
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	return &response{status: resp.StatusCode, header: resp.Header, body: b}, nil
}

// call is do with a background context, for requests that need no deadline of
// their own beyond the client's.
func (nd *node) call(method, path string, body any) (*response, error) {
	return nd.do(context.Background(), method, path, body)
}

// mustCall fails the test unless the request gets the wanted status.
func (nd *node) mustCall(method, path string, body any, want int) *response {
	nd.t.Helper()
	r, err := nd.call(method, path, body)
	if err != nil {
		nd.t.Fatalf("%s %s on %s: %v", method, path, nd.name, err)
	}
	if r.status != want {
		nd.t.Fatalf("%s %s on %s: %s, want HTTP %d", method, path, nd.name, r, want)
	}
	return r
}

// getJSON GETs path and decodes a 200 answer into out.
func (nd *node) getJSON(path string, out any) error {
	r, err := nd.call("GET", path, nil)
	if err != nil {
		return err
	}
	if r.status != http.StatusOK {
		return fmt.Errorf("GET %s on %s: %s", path, nd.name, r)
	}
	return json.Unmarshal(r.body, out)
}

// nodeStatus is the part of GET /v1/status the tests use.
type nodeStatus struct {
	NodeID       string `json:"node_id"`
	NodeName     string `json:"node_name"`
	RaftState    string `json:"raft_state"`
	Leader       string `json:"leader"`
	LeaderID     string `json:"leader_id"`
	Term         uint64 `json:"term"`
	AppliedIndex uint64 `json:"applied_index"`
	Members      int    `json:"members"`
	Voters       int    `json:"voters"`
}

func (nd *node) status() (nodeStatus, error) {
	var st nodeStatus
	err := nd.getJSON("/v1/status", &st)
	return st, err
}

// peer is one entry of GET /v1/operator/raft/peers.
type peer struct {
	ID       string `json:"id"`
	Name     string `json:"name"`
	Address  string `json:"address"`
	Suffrage string `json:"suffrage"`
	Voter    bool   `json:"voter"`
	Leader   bool   `json:"leader"`
}

func (nd *node) peers() ([]peer, error) {
	var out struct {
		Items []peer `json:"items"`
	}
	err := nd.getJSON("/v1/operator/raft/peers", &out)
	return out.Items, err
}

// member is one entry of GET /v1/members.
type member struct {
	Name   string `json:"name"`
	ID     string `json:"id"`
	Addr   string `json:"addr"`
	Status string `json:"status"`
}

func (nd *node) members() ([]member, error) {
	var out struct {
		Items []member `json:"items"`
	}
	err := nd.getJSON("/v1/members", &out)
	return out.Items, err
}

// model is a registry model as the API returns it.
type model struct {
	Name        string            `json:"name"`
	Description string            `json:"description"`
	Owner       string            `json:"owner"`
	Tags        map[string]string `json:"tags"`
	CreateIndex uint64            `json:"create_index"`
	ModifyIndex uint64            `json:"modify_index"`
}

// writeTimeout bounds how long a write is retried while the cluster has no
// leader or loses one (503).
const writeTimeout = 30 * time.Second

// tryWrite sends a write and retries it while the answer is 503 or the
// connection fails, as a client of a busy cluster would: on this shared 2-core
// machine a leader can lose its lease under load. retried says whether an
// earlier attempt may have been applied. Safe for goroutines other than the
// test's.
func (nd *node) tryWrite(method, path string, body any) (r *response, retried bool, err error) {
	deadline := time.Now().Add(writeTimeout)
	for {
		r, err = nd.call(method, path, body)
		if err == nil && r.status != http.StatusServiceUnavailable {
			return r, retried, nil
		}
		if !nd.running() || time.Now().After(deadline) {
			if err == nil {
				err = fmt.Errorf("%s %s on %s: %s", method, path, nd.name, r)
			}
			return r, retried, err
		}
		retried = true
		time.Sleep(200 * time.Millisecond)
	}
}

// write is tryWrite that fails the test unless the answer has status want.
func (nd *node) write(method, path string, body any, want int) *response {
	nd.t.Helper()
	r, retried, err := nd.tryWrite(method, path, body)
	if err != nil {
		nd.t.Fatal(err)
	}
	if retried {
		nd.t.Logf("%s %s on %s was retried after a 503 or a lost connection", method, path, nd.name)
	}
	if r.status != want {
		nd.t.Fatalf("%s %s on %s: %s, want HTTP %d", method, path, nd.name, r, want)
	}
	return r
}

// createModel registers a model through the node and returns the index it was
// committed at.
func (nd *node) createModel(name string, tags map[string]string) uint64 {
	nd.t.Helper()
	idx, err := nd.tryCreateModel(name, tags)
	if err != nil {
		nd.t.Fatal(err)
	}
	return idx
}

// tryCreateModel is createModel for goroutines other than the test's.
func (nd *node) tryCreateModel(name string, tags map[string]string) (uint64, error) {
	r, retried, err := nd.tryWrite("POST", "/v1/models", map[string]any{"name": name, "tags": tags})
	switch {
	case err != nil:
		return 0, err
	case r.status == http.StatusCreated:
		return r.index(), nil
	case r.status == http.StatusConflict && retried:
		// An attempt whose answer was lost did land; read back its index.
		var m model
		if err := nd.getJSON("/v1/models/"+name+"?consistency=consistent", &m); err != nil {
			return 0, err
		}
		return m.CreateIndex, nil
	}
	return 0, fmt.Errorf("create model %s on %s: %s", name, nd.name, r)
}

// inParallel runs fn(i) for i in [0, n) on `workers` goroutines and fails the
// test with the first error.
func inParallel(t testing.TB, workers, n int, fn func(i int) error) {
	t.Helper()
	work := make(chan int)
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for i := range work {
				if err := fn(i); err != nil {
					errs <- err
				}
			}
		})
	}
	for i := range n {
		work <- i
	}
	close(work)
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		t.Fatal(err)
	}
}

// modelNames lists every model on the node with the given query (e.g.
// "consistency=stale"), following cursors.
func (nd *node) modelNames(query string) ([]string, error) {
	var names []string
	cursor := ""
	for {
		path := "/v1/models?limit=1000&" + query
		if cursor != "" {
			path += "&cursor=" + cursor
		}
		var page struct {
			Items      []model `json:"items"`
			NextCursor string  `json:"next_cursor"`
		}
		if err := nd.getJSON(path, &page); err != nil {
			return nil, err
		}
		for _, m := range page.Items {
			names = append(names, m.Name)
		}
		if page.NextCursor == "" {
			return names, nil
		}
		cursor = page.NextCursor
	}
}

// setFault makes the node drop its transport traffic with host.
func (nd *node) dropTraffic(host string) {
	nd.t.Helper()
	nd.mustCall("PUT", "/v1/debug/faults", map[string]any{"host": host, "drop": true}, http.StatusOK)
}

func (nd *node) clearFaults() {
	nd.t.Helper()
	nd.mustCall("DELETE", "/v1/debug/faults", nil, http.StatusOK)
}

// cli runs the kiln CLI command (e.g. "operator raft list-peers") against the
// node with args after it, and returns its stdout; a non-zero exit is an error
// carrying stderr.
func (nd *node) cli(command string, args ...string) (string, error) {
	full := append(strings.Fields(command), "-address", nd.baseURL())
	if nd.c.token != "" && !slices.Contains(args, "-token") {
		full = append(full, "-token", nd.c.token)
	}
	if h := nd.c.https; h != nil {
		full = append(full, "-ca-cert", h.ca, "-client-cert", h.cert, "-client-key", h.key)
	}
	return runKiln(append(full, args...)...)
}

// runKiln runs the kiln binary with args, with KILN_ADDR unset.
func runKiln(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, kilnBinary(), args...)
	cmd.Env = slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "KILN_ADDR=") })
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			err = fmt.Errorf("kiln %s: exit %d: %s", strings.Join(args, " "), ee.ExitCode(), strings.TrimSpace(stderr.String()))
		}
		return stdout.String(), err
	}
	return stdout.String(), nil
}

// Access control and HTTPS.

// withACL enables ACLs on every node (insecure: the loopback test cluster has
// no gossip key or TLS unless the test adds them); newCluster bootstraps them
// by racing a bootstrap on every node, and the harness then sends the
// management token with every request.
func withACL() clusterOption {
	return func(c *cluster) {
		c.acl = true
		c.hcl += "insecure = true\nacl {\n  enabled = true\n}\n"
	}
}

// httpsFiles are the PEM files of withHTTPS.
type httpsFiles struct{ ca, cert, key string }

// withHTTPS serves every node's API over TLS with client certificates signed
// by ca; the harness and the CLI present cert and key.
func withHTTPS(ca, cert, key string) clusterOption {
	return func(c *cluster) {
		c.https = &httpsFiles{ca: ca, cert: cert, key: key}
		c.httpsClient = newHTTPSClient(c.t, c.https)
		c.hcl += fmt.Sprintf("http {\n  tls {\n    cert_file = %q\n    key_file = %q\n    client_ca_file = %q\n  }\n}\n", cert, key, ca)
	}
}

// client is the harness's HTTP client: httpClient, or the one that speaks
// HTTPS with the cluster's client certificate.
func (c *cluster) client() *http.Client {
	if c.httpsClient != nil {
		return c.httpsClient
	}
	return httpClient
}

// newHTTPSClient is httpClient over TLS, trusting ca and presenting cert.
func newHTTPSClient(t testing.TB, f *httpsFiles) *http.Client {
	t.Helper()
	pair, err := tls.LoadX509KeyPair(f.cert, f.key)
	if err != nil {
		t.Fatalf("client certificate: %v", err)
	}
	caPEM, err := os.ReadFile(f.ca)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	return &http.Client{Timeout: httpClient.Timeout, Transport: &http.Transport{
		DisableKeepAlives: true,
		TLSClientConfig:   &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair}},
	}}
}

func (nd *node) baseURL() string {
	if nd.c.https != nil {
		return "https://" + nd.httpAddr()
	}
	return "http://" + nd.httpAddr()
}

type tokenKey struct{}

// callAs is call with the given token instead of the cluster's ("" sends none).
func (nd *node) callAs(token, method, path string, body any) (*response, error) {
	return nd.do(context.WithValue(context.Background(), tokenKey{}, token), method, path, body)
}

// bootstrapACL sends POST /v1/acl/bootstrap to every node at once, retrying
// each while it has no leader, and keeps the one management secret that
// comes back. Exactly one must succeed.
func (c *cluster) bootstrapACL() {
	c.t.Helper()
	nodes := c.all()
	answers := make([]*response, len(nodes))
	errs := make([]error, len(nodes))
	var wg sync.WaitGroup
	for i, nd := range nodes {
		wg.Go(func() {
			deadline := time.Now().Add(leaderTimeout)
			for {
				r, err := nd.callAs("", "POST", "/v1/acl/bootstrap", nil)
				if err == nil && r.status != http.StatusServiceUnavailable {
					answers[i] = r
					return
				}
				if time.Now().After(deadline) {
					errs[i] = fmt.Errorf("bootstrap on %s: %v %v", nd.name, r, err)
					return
				}
				time.Sleep(pollInterval)
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			c.t.Fatal(err)
		}
	}
	for i, r := range answers {
		switch r.status {
		case http.StatusOK:
			if c.token != "" {
				c.t.Fatalf("a second bootstrap succeeded on %s", nodes[i].name)
			}
			var tok struct {
				SecretID string `json:"secret_id"`
			}
			if err := json.Unmarshal(r.body, &tok); err != nil || tok.SecretID == "" {
				c.t.Fatalf("bootstrap answer without a secret: %s", r)
			}
			c.token = tok.SecretID
		case http.StatusConflict:
		default:
			c.t.Fatalf("bootstrap on %s: %s", nodes[i].name, r)
		}
	}
	if c.token == "" {
		c.t.Fatal("no bootstrap succeeded")
	}
	c.bootstraps = answers
}
