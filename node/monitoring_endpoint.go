package node

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kilnml/kiln/actors/monitor"
	"github.com/kilnml/kiln/ml"
	"github.com/kilnml/kiln/ml/train"
	"github.com/kilnml/kiln/node/internal/acl"
	"github.com/kilnml/kiln/node/internal/predlog"
	"github.com/kilnml/kiln/raftfsm"
	"github.com/kilnml/kiln/raftfsm/structs"
	"github.com/kilnml/kiln/transport"
)

// Monitoring's RPC methods: each node answers for its own prediction log.
const (
	rpcLogQuery   = "predlog.query"
	rpcLogWindow  = "predlog.window"
	rpcLogLookup  = "predlog.lookup"
	rpcLogLabel   = "predlog.label"
	rpcLogLabeled = "predlog.labeled"
	rpcLogPending = "predlog.pending"
)

// fanOutTimeout bounds a fan-out read of the nodes' logs.
const fanOutTimeout = 10 * time.Second

// monitoringEndpoint: the prediction log, feedback and live performance,
// monitors and their drift checks, alert rules and alerts. Monitoring
// data is the monitor kind, named by deployment.
func (a *Agent) monitoringEndpoint() endpoint {
	k := structs.KindMonitor
	return endpoint{
		routes: []route{
			{pattern: "GET /v1/deployments/{name}/predictions", handler: a.handlePredictions, kind: k, need: needRead, name: pathName},
			{pattern: "GET /v1/deployments/{name}/performance", handler: a.handlePerformance, kind: k, need: needRead, name: pathName},
			{pattern: "POST /v1/feedback", handler: a.handleFeedback, kind: k, need: needBody},
			{pattern: "GET /v1/monitors", handler: a.handleMonitorList, kind: k, need: needList},
			{pattern: "PUT /v1/monitors/{name}", handler: a.handleMonitorPut, kind: k, need: needWrite, name: pathName},
			{pattern: "GET /v1/monitors/{name}", handler: a.handleMonitorGet, kind: k, need: needRead, name: pathName},
			{pattern: "DELETE /v1/monitors/{name}", handler: a.handleMonitorDelete, kind: k, need: needWrite, name: pathName},
			{pattern: "POST /v1/monitors/{name}/check", handler: a.handleMonitorCheck, kind: k, need: needWrite, name: pathName},
			{pattern: "GET /v1/monitors/{name}/drift", handler: a.handleDriftList, kind: k, need: needRead, name: pathName},
			{pattern: "GET /v1/alert-rules", handler: a.handleAlertRuleList, kind: k, need: needList},
			{pattern: "PUT /v1/alert-rules/{name}", handler: a.handleAlertRulePut, kind: k, need: needBody},
			{pattern: "GET /v1/alert-rules/{name}", handler: a.handleAlertRuleGet, kind: k, need: needBody},
			{pattern: "DELETE /v1/alert-rules/{name}", handler: a.handleAlertRuleDelete, kind: k, need: needBody},
			{pattern: "GET /v1/alerts", handler: a.handleAlertList, kind: k, need: needList},
			{pattern: "POST /v1/alerts/{name}/ack", handler: a.handleAlertAck, kind: k, need: needBody},
		},
		rpcs: map[string]transport.Handler{
			rpcLogQuery:   a.handleLogQueryRPC,
			rpcLogWindow:  a.handleLogWindowRPC,
			rpcLogLookup:  a.handleLogLookupRPC,
			rpcLogLabel:   a.handleLogLabelRPC,
			rpcLogLabeled: a.handleLogLabeledRPC,
			rpcLogPending: a.handleLogPendingRPC,
		},
	}
}

func badRPC(method string, err error) error {
	return structs.Errorf(structs.CodeInvalid, "node: bad %s request: %v", method, err)
}

// logRange is a deployment's records logged in [From, To).
type logRange struct {
	Deployment string `msgpack:"deployment"`
	From       int64  `msgpack:"from"` // Unix nanoseconds
	To         int64  `msgpack:"to"`
	Limit      int    `msgpack:"limit"`
}

// timeRange reads ?from= and ?to= (RFC 3339, or a duration back from
// now such as 1h), defaulting to the last hour.
func timeRange(r *http.Request, now time.Time) (time.Time, time.Time, error) {
	q := r.URL.Query()
	parse := func(field, s string, def time.Time) (time.Time, error) {
		if s == "" {
			return def, nil
		}
		return parseWhen(field, s, now)
	}
	from, err := parse("from", q.Get("from"), now.Add(-time.Hour))
	if err != nil {
		return from, from, err
	}
	to, err := parse("to", q.Get("to"), now.Add(time.Second))
	if err == nil && !to.After(from) {
		err = structs.Errorf(structs.CodeInvalid, "to (%s) is not after from (%s)", to.Format(time.RFC3339), from.Format(time.RFC3339))
	}
	return from, to, err
}

// parseWhen reads a query time: RFC 3339, or a duration back from now
// (1h, 7d).
func parseWhen(field, s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if d, err := structs.ParseSpan(s); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, structs.Errorf(structs.CodeInvalid, "%s %q: give an RFC 3339 time or a duration back from now, such as 1h", field, s)
}

// loggedRecord is a logged request as the API shows it.
type loggedRecord struct {
	ID        string         `json:"id" msgpack:"id"`
	Time      time.Time      `json:"time" msgpack:"time"`
	Node      string         `json:"node" msgpack:"node"`
	Version   uint64         `json:"version" msgpack:"version"`
	LatencyMS float64        `json:"latency_ms" msgpack:"latency_ms"`
	Inputs    []loggedTensor `json:"inputs" msgpack:"inputs"`
	Outputs   []loggedTensor `json:"outputs" msgpack:"outputs"`
	Labels    []float64      `json:"labels,omitempty" msgpack:"labels"`
}

type loggedTensor struct {
	Name  string    `json:"name" msgpack:"name"`
	Shape []int     `json:"shape" msgpack:"shape"`
	Data  []float64 `json:"data" msgpack:"data"`
}

func loggedTensors(ts []ml.Tensor) []loggedTensor {
	out := make([]loggedTensor, len(ts))
	for i, t := range ts {
		data := slices.Clone(t.Data)
		for j, v := range data {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				data[j] = 0 // JSON has no NaN; a missing value was logged as NaN
			}
		}
		out[i] = loggedTensor{Name: t.Name, Shape: t.Shape, Data: data}
	}
	return out
}

type logQueryReply struct {
	Records []loggedRecord `msgpack:"records"`
}

func (a *Agent) localLogQuery(args *logRange) (*logQueryReply, error) {
	out := &logQueryReply{}
	err := a.monitoring.log.Query(args.Deployment, time.Unix(0, args.From), time.Unix(0, args.To), func(r *predlog.Record) bool {
		out.Records = append(out.Records, loggedRecord{ID: r.ID, Time: r.At, Node: a.cfg.NodeName, Version: r.Version,
			LatencyMS: float64(r.Latency) / 1e6, Inputs: loggedTensors(r.Inputs), Outputs: loggedTensors(r.Outputs), Labels: r.Labels})
		return len(out.Records) < args.Limit
	})
	return out, err
}

func (a *Agent) handleLogQueryRPC(_ context.Context, dec transport.Decoder) (any, error) {
	var args logRange
	if err := decodeArgs(dec, rpcLogQuery, &args); err != nil {
		return nil, err
	}
	return a.localLogQuery(&args)
}

// handlePredictions serves GET /v1/deployments/{name}/predictions: the
// logged requests of every node in [from, to), oldest first, at most
// ?limit= (100; at most 10000).
func (a *Agent) handlePredictions(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	from, to, err := timeRange(r, time.Now())
	if err != nil {
		writeError(w, err)
		return
	}
	limit := 100
	if s := r.URL.Query().Get("limit"); s != "" {
		if limit, err = strconv.Atoi(s); err != nil || limit < 1 || limit > 10000 {
			writeError(w, structs.Errorf(structs.CodeInvalid, "limit %q is out of range 1..10000", s))
			return
		}
	}
	if err := a.deploymentExists(name); err != nil {
		writeError(w, err)
		return
	}
	args := &logRange{Deployment: name, From: from.UnixNano(), To: to.UnixNano(), Limit: limit}
	replies, missing := fanOut(r.Context(), a, rpcLogQuery, args, fanOutTimeout, func() (*logQueryReply, error) { return a.localLogQuery(args) })
	var all []loggedRecord
	truncated := false
	for _, rep := range replies {
		all = append(all, rep.Records...)
		truncated = truncated || len(rep.Records) >= limit // that node may hold more
	}
	slices.SortFunc(all, func(x, y loggedRecord) int { return x.Time.Compare(y.Time) })
	truncated = truncated || len(all) > limit
	if truncated {
		all = all[:limit]
	}
	if all == nil {
		all = []loggedRecord{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"deployment": name, "from": from.UTC(), "to": to.UTC(), "items": all, "truncated": truncated, "nodes_missing": missing})
}

// deploymentExists is not_found for an unknown deployment.
func (a *Agent) deploymentExists(name string) error {
	txn := a.fsm.ReadTxn()
	defer txn.Discard()
	_, err := txn.Deployment(name)
	return err
}

// windowReply is a node's window as raw little-endian float64 columns:
// msgpack would spend nine bytes and a type switch on every value.
type windowReply struct {
	Rows      int      `msgpack:"rows"`
	Features  [][]byte `msgpack:"features"`
	Outputs   [][]byte `msgpack:"outputs"`
	Skipped   int      `msgpack:"skipped"`
	Truncated bool     `msgpack:"truncated"`
}

func floatBytes(v []float64) []byte {
	b := make([]byte, 8*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint64(b[8*i:], math.Float64bits(x))
	}
	return b
}

func bytesFloats(b []byte) []float64 {
	out := make([]float64, len(b)/8)
	for i := range out {
		out[i] = math.Float64frombits(binary.LittleEndian.Uint64(b[8*i:]))
	}
	return out
}

func (a *Agent) handleLogWindowRPC(_ context.Context, dec transport.Decoder) (any, error) {
	var args logRange
	if err := decodeArgs(dec, rpcLogWindow, &args); err != nil {
		return nil, err
	}
	c, err := a.monitoring.log.Window(args.Deployment, time.Unix(0, args.From), time.Unix(0, args.To), args.Limit)
	if err != nil {
		return nil, err
	}
	rep := &windowReply{Rows: c.Rows, Skipped: c.Skipped, Truncated: c.Truncated}
	for _, f := range c.Features {
		rep.Features = append(rep.Features, floatBytes(f))
	}
	for _, o := range c.Outputs {
		rep.Outputs = append(rep.Outputs, floatBytes(o))
	}
	return rep, nil
}

// logWindow gathers a deployment's logged rows in [from, to) from every
// node, at most maxRows from each.
func (a *Agent) logWindow(ctx context.Context, deployment string, from, to time.Time, maxRows int) (*predlog.Columns, int, error) {
	args := &logRange{Deployment: deployment, From: from.UnixNano(), To: to.UnixNano(), Limit: maxRows}
	parts, missing := fanOut(ctx, a, rpcLogWindow, args, fanOutTimeout, func() (*windowReply, error) { return nil, nil })
	local, err := a.monitoring.log.Window(deployment, from, to, maxRows)
	if err != nil {
		return nil, 0, err
	}
	out := local
	for _, p := range parts {
		if p == nil || p.Rows == 0 {
			continue
		}
		if out.Rows == 0 && len(out.Features) == 0 {
			out.Features = make([][]float64, len(p.Features))
			out.Outputs = make([][]float64, len(p.Outputs))
		}
		if len(p.Features) != len(out.Features) || len(p.Outputs) != len(out.Outputs) {
			out.Skipped += p.Rows
			continue
		}
		for j, b := range p.Features {
			out.Features[j] = append(out.Features[j], bytesFloats(b)...)
		}
		for j, b := range p.Outputs {
			out.Outputs[j] = append(out.Outputs[j], bytesFloats(b)...)
		}
		out.Rows += p.Rows
		out.Skipped += p.Skipped
		out.Truncated = out.Truncated || p.Truncated
	}
	return out, missing, nil
}

// Feedback.

// maxFeedbackItems bounds one POST /v1/feedback.
const maxFeedbackItems = 10000

type feedbackItem struct {
	ID    string          `json:"id"`
	Label json.RawMessage `json:"label"`
}

type feedbackRequest struct {
	// Deployment, when given, lets labels that match no logged request
	// yet be checked against its task now.
	Deployment string         `json:"deployment,omitempty"`
	Items      []feedbackItem `json:"items"`
}

type lookupArgs struct {
	IDs []string `msgpack:"ids"`
}

type lookupMatch struct {
	Deployment string `msgpack:"deployment"`
	Version    uint64 `msgpack:"version"`
	Rows       int    `msgpack:"rows"`
	OutWidth   int    `msgpack:"out_width"`
	Node       string `msgpack:"node"` // RPC address, filled by the asker
}

type lookupReply struct {
	Addr    string                 `msgpack:"addr"`
	Matches map[string]lookupMatch `msgpack:"matches"`
}

func (a *Agent) localLookup(ids []string) (*lookupReply, error) {
	found, err := a.monitoring.log.Lookup(ids)
	if err != nil {
		return nil, err
	}
	rep := &lookupReply{Addr: a.trans.Addr(), Matches: map[string]lookupMatch{}}
	for id, m := range found {
		rep.Matches[id] = lookupMatch{Deployment: m.Deployment, Version: m.Version, Rows: m.Rows, OutWidth: m.OutWidth}
	}
	return rep, nil
}

func (a *Agent) handleLogLookupRPC(_ context.Context, dec transport.Decoder) (any, error) {
	var args lookupArgs
	if err := decodeArgs(dec, rpcLogLookup, &args); err != nil {
		return nil, err
	}
	return a.localLookup(args.IDs)
}

type labelArgs struct {
	Labels map[string][]float64 `msgpack:"labels"`
}

type labelReply struct {
	Missing []string `msgpack:"missing"`
}

func (a *Agent) handleLogLabelRPC(_ context.Context, dec transport.Decoder) (any, error) {
	var args labelArgs
	if err := decodeArgs(dec, rpcLogLabel, &args); err != nil {
		return nil, err
	}
	missing, err := a.monitoring.log.Label(args.Labels)
	return &labelReply{Missing: missing}, err
}

// lookupAll finds ids in every node's log.
func (a *Agent) lookupAll(ctx context.Context, ids []string) map[string]lookupMatch {
	replies, _ := fanOut(ctx, a, rpcLogLookup, &lookupArgs{IDs: ids}, fanOutTimeout, func() (*lookupReply, error) { return a.localLookup(ids) })
	out := map[string]lookupMatch{}
	for _, rep := range replies {
		for id, m := range rep.Matches {
			m.Node = rep.Addr
			out[id] = m
		}
	}
	return out
}

// labelTask is how deployment's labels are read: its monitor's task, or
// the one its first output implies (a column per class: classification).
// classes is the number of classes of a classifier.
func (a *Agent) labelTask(deployment string, outWidth int) (task string, classes int) {
	txn := a.fsm.ReadTxn()
	m, err := txn.Monitor(deployment)
	txn.Discard()
	task = structs.TaskRegression
	switch {
	case err == nil && m.Spec.Task != "":
		task = m.Spec.Task
	case outWidth > 1:
		task = structs.TaskClassification
	}
	return task, max(outWidth, 2)
}

// labelTasks remembers labelTask's answers for one batch of labels, which
// may hold thousands of one deployment's.
type labelTasks struct {
	a    *Agent
	seen map[string]labelTask
}

type labelTask struct {
	task    string
	classes int
}

func (t *labelTasks) get(deployment string, outWidth int) (string, int) {
	key := deployment + "/" + strconv.Itoa(outWidth)
	v, ok := t.seen[key]
	if !ok {
		v.task, v.classes = t.a.labelTask(deployment, outWidth)
		if t.seen == nil {
			t.seen = map[string]labelTask{}
		}
		t.seen[key] = v
	}
	return v.task, v.classes
}

// deploymentOutWidth is the values per row of the first output of the
// deployment's newest version, from its schema (0 when unknown).
func (a *Agent) deploymentOutWidth(deployment string) int {
	txn := a.fsm.ReadTxn()
	defer txn.Discard()
	d, err := txn.Deployment(deployment)
	if err != nil || len(d.Traffic.Versions) == 0 {
		return 0
	}
	v, err := txn.Version(deployment, newestVersion(d))
	if err != nil || len(v.Schema.Outputs) == 0 {
		return 0
	}
	shape := v.Schema.Outputs[0].Shape
	if len(shape) == 2 && shape[1] > 0 {
		return shape[1]
	}
	return 1
}

// parseLabel reads a label for a request of rows rows: a value, or an
// array of one value per row. A classifier's label is a class index (or a
// boolean, for two classes); a regression's a finite number.
func parseLabel(path string, raw json.RawMessage, task string, classes, rows int) ([]float64, error) {
	var vals []json.RawMessage
	if len(raw) > 0 && raw[0] == '[' {
		if err := json.Unmarshal(raw, &vals); err != nil {
			return nil, structs.Errorf(structs.CodeInvalid, "%s: %v", path, err)
		}
	} else {
		vals = []json.RawMessage{raw}
	}
	if rows > 0 && len(vals) != rows {
		return nil, structs.Errorf(structs.CodeInvalid, "%s: the request had %d rows; give one label per row", path, rows)
	}
	out := make([]float64, len(vals))
	for i, v := range vals {
		p := path
		if len(vals) > 1 {
			p = fmt.Sprintf("%s[%d]", path, i)
		}
		var b bool
		if json.Unmarshal(v, &b) == nil {
			if task != structs.TaskClassification || classes != 2 {
				return nil, structs.Errorf(structs.CodeInvalid, "%s: a boolean label is for a classifier of two classes; this deployment's task is %s", p, task)
			}
			if b {
				out[i] = 1
			}
			continue
		}
		var f float64
		if err := json.Unmarshal(v, &f); err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			want := "a number"
			if task == structs.TaskClassification {
				want = fmt.Sprintf("a class index from 0 to %d", classes-1)
			}
			return nil, structs.Errorf(structs.CodeInvalid, "%s: %s is not a label of a %s model: give %s", p, string(v), task, want)
		}
		if task == structs.TaskClassification && (f != math.Trunc(f) || f < 0 || int(f) >= classes) {
			return nil, structs.Errorf(structs.CodeInvalid, "%s: %v is not a class index of this %d-class model (0 to %d)", p, f, classes, classes-1)
		}
		out[i] = f
	}
	return out, nil
}

// handleFeedback joins labels to logged predictions by request ID. Either
// every item is taken (labelled, or kept pending for a request not logged
// yet) or, when one is bad, none is.
func (a *Agent) handleFeedback(w http.ResponseWriter, r *http.Request) {
	var req feedbackRequest
	if err := a.decodeBody(w, r, &req); err != nil {
		writeError(w, err)
		return
	}
	if len(req.Items) == 0 || len(req.Items) > maxFeedbackItems {
		writeError(w, structs.Errorf(structs.CodeInvalid, "items must hold 1 to %d labels", maxFeedbackItems))
		return
	}
	ids := make([]string, len(req.Items))
	seen := map[string]bool{}
	for i, it := range req.Items {
		if it.ID == "" || len(it.ID) > 256 {
			writeError(w, structs.Errorf(structs.CodeInvalid, "items[%d].id must be a request ID of 1 to 256 bytes", i))
			return
		}
		if seen[it.ID] {
			writeError(w, structs.Errorf(structs.CodeInvalid, "items[%d].id %q appears twice", i, it.ID))
			return
		}
		if len(it.Label) == 0 || string(it.Label) == "null" {
			writeError(w, structs.Errorf(structs.CodeInvalid, "items[%d].label is missing", i))
			return
		}
		seen[it.ID] = true
		ids[i] = it.ID
	}
	if req.Deployment != "" {
		if err := a.deploymentExists(req.Deployment); err != nil {
			writeError(w, err)
			return
		}
	}
	matches := a.lookupAll(r.Context(), ids)
	tasks := labelTasks{a: a}
	byNode := map[string]map[string][]float64{}
	var pending []predlog.Pending
	var namedTask string // the named deployment's task, for labels not yet matched
	var namedClasses int
	if req.Deployment != "" {
		namedTask, namedClasses = a.labelTask(req.Deployment, a.deploymentOutWidth(req.Deployment))
	}
	for i, it := range req.Items {
		path := fmt.Sprintf("items[%d].label", i)
		m, ok := matches[it.ID]
		if !ok {
			if req.Deployment != "" {
				if _, err := parseLabel(path, it.Label, namedTask, namedClasses, 0); err != nil {
					writeError(w, err)
					return
				}
			}
			pending = append(pending, predlog.Pending{ID: it.ID, Label: it.Label, Deployment: req.Deployment})
			continue
		}
		if err := a.authorize(r, structs.KindMonitor, m.Deployment, structs.AccessWrite); err != nil {
			writeError(w, err)
			return
		}
		task, classes := tasks.get(m.Deployment, m.OutWidth)
		vals, err := parseLabel(path, it.Label, task, classes, m.Rows)
		if err != nil {
			writeError(w, err)
			return
		}
		if byNode[m.Node] == nil {
			byNode[m.Node] = map[string][]float64{}
		}
		byNode[m.Node][it.ID] = vals
	}
	if len(pending) > 0 {
		dep := req.Deployment
		if dep == "" {
			dep = "*"
		}
		if err := a.authorize(r, structs.KindMonitor, dep, structs.AccessWrite); err != nil {
			writeError(w, structs.Errorf(structs.CodePermissionDenied, "%d labels match no logged request yet; to keep them until one is logged, name their deployment (\"deployment\") and have monitor write on it: %v", len(pending), err))
			return
		}
	}
	matched := 0
	for node, labels := range byNode {
		missing, err := a.sendLabels(r.Context(), node, labels)
		if err != nil {
			writeError(w, err)
			return
		}
		for _, id := range missing { // expired between lookup and label
			for _, it := range req.Items {
				if it.ID == id {
					pending = append(pending, predlog.Pending{ID: id, Label: it.Label, Deployment: req.Deployment})
				}
			}
		}
		matched += len(labels) - len(missing)
	}
	if err := a.monitoring.log.AddPending(pending, time.Now()); err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"matched": matched, "unmatched": len(pending)})
}

// sendLabels stores labels on the node (RPC address) that logged them.
func (a *Agent) sendLabels(ctx context.Context, node string, labels map[string][]float64) ([]string, error) {
	if node == a.trans.Addr() {
		return a.monitoring.log.Label(labels)
	}
	var rep labelReply
	err := a.trans.Call(ctx, node, rpcLogLabel, &labelArgs{Labels: labels}, &rep)
	return rep.Missing, err
}

// matchPending retries this node's pending labels: those now logged are
// stored, those of the wrong type dropped (and logged), the rest wait
// until their grace period ends.
func (a *Agent) matchPending(ctx context.Context) {
	items, _, err := a.monitoring.log.PendingLabels(1000)
	if err != nil || len(items) == 0 {
		return
	}
	ids := make([]string, len(items))
	for i, p := range items {
		ids[i] = p.ID
	}
	matches := a.lookupAll(ctx, ids)
	tasks := labelTasks{a: a}
	byNode := map[string]map[string][]float64{}
	var done []predlog.Pending
	for _, p := range items {
		m, ok := matches[p.ID]
		if !ok {
			continue
		}
		done = append(done, p)
		if p.Deployment != "" && p.Deployment != m.Deployment {
			a.logger.Warn("feedback: a label named another deployment than its request's; dropped", "id", p.ID, "named", p.Deployment, "logged", m.Deployment)
			continue
		}
		task, classes := tasks.get(m.Deployment, m.OutWidth)
		vals, err := parseLabel("label", p.Label, task, classes, m.Rows)
		if err != nil {
			a.logger.Warn("feedback: a late label does not fit its request; dropped", "id", p.ID, "error", err)
			continue
		}
		if byNode[m.Node] == nil {
			byNode[m.Node] = map[string][]float64{}
		}
		byNode[m.Node][p.ID] = vals
	}
	for node, labels := range byNode {
		if _, err := a.sendLabels(ctx, node, labels); err != nil {
			a.logger.Warn("feedback: storing late labels failed", "node", node, "error", err)
			return
		}
	}
	if err := a.monitoring.log.RemovePending(done); err != nil {
		a.logger.Warn("feedback: removing matched labels failed", "error", err)
	}
}

type pendingArgs struct {
	Deployment string `msgpack:"deployment"`
}

type pendingReply struct {
	Count int `msgpack:"count"`
}

// localPending counts this node's pending labels that name the deployment,
// or name none (which may be its).
func (a *Agent) localPending(args *pendingArgs) (*pendingReply, error) {
	n, err := a.monitoring.log.CountPending(func(p *predlog.Pending) bool { return p.Deployment == "" || p.Deployment == args.Deployment })
	return &pendingReply{Count: n}, err
}

func (a *Agent) handleLogPendingRPC(_ context.Context, dec transport.Decoder) (any, error) {
	var args pendingArgs
	if err := decodeArgs(dec, rpcLogPending, &args); err != nil {
		return nil, err
	}
	return a.localPending(&args)
}

// Performance.

type labeledArgs struct {
	logRange
}

// labeledVersion is one version's labelled rows: Width output values per
// row, and one label per row.
type labeledVersion struct {
	Width  int    `msgpack:"width"`
	Out    []byte `msgpack:"out"`
	Labels []byte `msgpack:"labels"`
	// Times holds each row's log time (Unix nanoseconds, as float64s like
	// Out), for performance over time. A node of an older version sends
	// none: its rows count in the window's scores only.
	Times []byte `msgpack:"times,omitempty"`
}

type labeledReply struct {
	Versions map[uint64]*labeledVersion `msgpack:"versions"`
}

// maxPerformanceSteps bounds the steps of GET .../performance?step=.
const maxPerformanceSteps = 500

// maxLabeledRows bounds the labelled rows one node sends for a window.
const maxLabeledRows = 1_000_000

func (a *Agent) localLabeled(args *logRange) (*labeledReply, error) {
	out := &labeledReply{Versions: map[uint64]*labeledVersion{}}
	outs, labels, times := map[uint64][]float64{}, map[uint64][]float64{}, map[uint64][]float64{}
	rows := 0
	err := a.monitoring.log.Labeled(args.Deployment, time.Unix(0, args.From), time.Unix(0, args.To), func(version uint64, at time.Time, o ml.Tensor, l []float64) {
		if rows >= maxLabeledRows || len(l) == 0 || o.Len()%len(l) != 0 {
			return
		}
		width := o.Len() / len(l)
		lv := out.Versions[version]
		if lv == nil {
			lv = &labeledVersion{Width: width}
			out.Versions[version] = lv
		}
		if width != lv.Width {
			return
		}
		outs[version] = append(outs[version], o.Data...)
		labels[version] = append(labels[version], l...)
		for range l {
			times[version] = append(times[version], float64(at.UnixNano()))
		}
		rows += len(l)
	})
	for v, lv := range out.Versions {
		lv.Out, lv.Labels, lv.Times = floatBytes(outs[v]), floatBytes(labels[v]), floatBytes(times[v])
	}
	return out, err
}

func (a *Agent) handleLogLabeledRPC(_ context.Context, dec transport.Decoder) (any, error) {
	var args logRange
	if err := decodeArgs(dec, rpcLogLabeled, &args); err != nil {
		return nil, err
	}
	return a.localLabeled(&args)
}

// VersionPerformance is one version's live quality over a window.
type VersionPerformance struct {
	Version  uint64   `json:"version"`
	Labeled  int      `json:"labeled"`
	Accuracy *float64 `json:"accuracy,omitempty"`
	F1       *float64 `json:"f1,omitempty"`
	AUC      *float64 `json:"auc,omitempty"`
	LogLoss  *float64 `json:"logloss,omitempty"`
	RMSE     *float64 `json:"rmse,omitempty"`
	MAE      *float64 `json:"mae,omitempty"`
}

// performanceReport is GET .../performance.
type performanceReport struct {
	Deployment string               `json:"deployment"`
	Task       string               `json:"task"`
	Window     string               `json:"window"`
	Versions   []VersionPerformance `json:"versions"`
	All        *VersionPerformance  `json:"all,omitempty"`
	// Unmatched counts the labels that match no logged request yet and
	// name this deployment, or none.
	Unmatched    int `json:"unmatched"`
	NodesMissing int `json:"nodes_missing"`
	// Series, with ?step=, scores each step of the window on its own,
	// oldest first; a step without labelled rows has no versions.
	Series []performanceStep `json:"series,omitempty"`
}

// performanceStep is one step of the window: the rows logged in [from,
// from+step), scored per version.
type performanceStep struct {
	From     time.Time            `json:"from"`
	Versions []VersionPerformance `json:"versions"`
}

// performance scores the labelled predictions of deployment in the last
// window, per version and over all of them; with step > 0, also each step
// of the window on its own (the steps end at now).
func (a *Agent) performance(ctx context.Context, deployment string, window, step time.Duration) *performanceReport {
	now := time.Now()
	from := now.Add(-window)
	args := &logRange{Deployment: deployment, From: from.UnixNano(), To: now.Add(time.Second).UnixNano()}
	replies, missing := fanOut(ctx, a, rpcLogLabeled, args, fanOutTimeout, func() (*labeledReply, error) { return a.localLabeled(args) })
	type acc struct {
		width     int
		out, want []float64
	}
	byVersion := map[uint64]*acc{}
	nSteps := 0
	if step > 0 {
		nSteps = int((window + step - 1) / step)
	}
	// byStep[i][v]: the rows of version v logged in step i.
	byStep := make([]map[uint64]*acc, nSteps)
	for _, rep := range replies {
		for v, lv := range rep.Versions {
			ac := byVersion[v]
			if ac == nil {
				ac = &acc{width: lv.Width}
				byVersion[v] = ac
			}
			if ac.width != lv.Width {
				continue
			}
			out, want := bytesFloats(lv.Out), bytesFloats(lv.Labels)
			ac.out = append(ac.out, out...)
			ac.want = append(ac.want, want...)
			times := bytesFloats(lv.Times)
			if nSteps == 0 || len(times) != len(want) {
				continue
			}
			for r, at := range times {
				i := int((int64(at) - from.UnixNano()) / int64(step))
				if i < 0 || i >= nSteps {
					continue
				}
				if byStep[i] == nil {
					byStep[i] = map[uint64]*acc{}
				}
				sa := byStep[i][v]
				if sa == nil {
					sa = &acc{width: lv.Width}
					byStep[i][v] = sa
				}
				sa.out = append(sa.out, out[r*lv.Width:(r+1)*lv.Width]...)
				sa.want = append(sa.want, want[r])
			}
		}
	}
	width := max(a.deploymentOutWidth(deployment), 1)
	for _, ac := range byVersion {
		width = ac.width
	}
	task, classes := a.labelTask(deployment, width)
	rep := &performanceReport{Deployment: deployment, Task: task, Window: window.String(), Versions: []VersionPerformance{}, NodesMissing: missing}
	all := &acc{width: width}
	for _, v := range slices.Sorted(maps.Keys(byVersion)) {
		ac := byVersion[v]
		rep.Versions = append(rep.Versions, score(v, task, classes, ac.width, ac.want, ac.out))
		if ac.width == width {
			all.out = append(all.out, ac.out...)
			all.want = append(all.want, ac.want...)
		}
	}
	if len(all.want) > 0 {
		s := score(0, task, classes, width, all.want, all.out)
		rep.All = &s
	}
	for i, vs := range byStep {
		ps := performanceStep{From: from.Add(time.Duration(i) * step).UTC(), Versions: []VersionPerformance{}}
		for _, v := range slices.Sorted(maps.Keys(vs)) {
			ps.Versions = append(ps.Versions, score(v, task, classes, vs[v].width, vs[v].want, vs[v].out))
		}
		rep.Series = append(rep.Series, ps)
	}
	pargs := &pendingArgs{Deployment: deployment}
	pend, _ := fanOut(ctx, a, rpcLogPending, pargs, fanOutTimeout, func() (*pendingReply, error) { return a.localPending(pargs) })
	for _, p := range pend {
		rep.Unmatched += p.Count
	}
	return rep
}

// score computes one version's metrics with ml/train's Evaluate and F1.
func score(version uint64, task string, classes, width int, y, out []float64) VersionPerformance {
	vp := VersionPerformance{Version: version, Labeled: len(y)}
	if len(y) == 0 {
		return vp
	}
	set := func(dst **float64, v float64, ok bool) {
		if ok && !math.IsNaN(v) {
			*dst = &v
		}
	}
	if task == structs.TaskRegression {
		pred := out
		if width > 1 {
			pred = make([]float64, len(y))
			for i := range pred {
				pred[i] = out[i*width]
			}
		}
		m := train.Evaluate(train.Regression, 1, y, pred)
		set(&vp.RMSE, m[train.RMSE], true)
		set(&vp.MAE, m[train.MAE], true)
		return vp
	}
	t, k, pred := train.Binary, 1, out
	switch {
	case width == 2:
		pred = make([]float64, len(y))
		for i := range pred {
			pred[i] = out[2*i+1]
		}
	case width > 2:
		t, k = train.Multiclass, width
	}
	if t == train.Binary {
		for _, v := range y {
			if v > 1 {
				return vp // labels of more classes than the model gives
			}
		}
	}
	m := train.Evaluate(t, k, y, pred)
	acc, okA := m[train.Accuracy]
	set(&vp.Accuracy, acc, okA)
	ll, okL := m[train.LogLoss]
	set(&vp.LogLoss, ll, okL)
	auc, okU := m[train.AUC]
	set(&vp.AUC, auc, okU)
	set(&vp.F1, train.F1(t, k, y, pred), true)
	return vp
}

func (a *Agent) handlePerformance(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	window := time.Hour
	if s := r.URL.Query().Get("window"); s != "" {
		d, err := structs.ParseSpan(s)
		if err != nil || d <= 0 {
			writeError(w, structs.Errorf(structs.CodeInvalid, "window %q: give a duration, such as 1h", s))
			return
		}
		window = d
	}
	var step time.Duration
	if s := r.URL.Query().Get("step"); s != "" {
		d, err := structs.ParseSpan(s)
		if err != nil || d <= 0 || d > window || window/d > maxPerformanceSteps {
			writeError(w, structs.Errorf(structs.CodeInvalid, "step %q: give a duration no longer than the window (%s) and at least 1/%d of it, such as 1h", s, window, maxPerformanceSteps))
			return
		}
		step = d
	}
	if err := a.deploymentExists(name); err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, a.performance(r.Context(), name, window, step))
}

// Monitors.

func (a *Agent) handleMonitorPut(w http.ResponseWriter, r *http.Request) {
	var spec structs.MonitorSpec
	if err := a.decodeBody(w, r, &spec); err != nil {
		writeError(w, err)
		return
	}
	if err := nameFromPath("deployment", &spec.Deployment, r.PathValue("name")); err != nil {
		writeError(w, err)
		return
	}
	spec.Defaults()
	if err := spec.Validate(); err != nil {
		writeError(w, err)
		return
	}
	txn := a.fsm.ReadTxn()
	m, err := resolveMonitor(txn, &spec)
	txn.Discard()
	if err != nil {
		writeError(w, err)
		return
	}
	m.CreatedAt = time.Now().UTC()
	serveWrite[structs.Monitor](a, w, r, structs.MonitorPutType, &structs.MonitorPutRequest{Monitor: *m}, http.StatusOK)
}

// resolveMonitor settles a monitor's reference dataset version and its
// columns in the order of the model's input values.
func resolveMonitor(txn *raftfsm.Txn, spec *structs.MonitorSpec) (*structs.Monitor, error) {
	d, err := txn.Deployment(spec.Deployment)
	if err != nil {
		return nil, err
	}
	if len(d.Traffic.Versions) == 0 {
		return nil, structs.Errorf(structs.CodeInvalid, "deployment %q has no version", spec.Deployment)
	}
	version, err := txn.Version(spec.Deployment, newestVersion(d))
	if err != nil {
		return nil, err
	}
	ref := spec.ReferenceDataset
	if ref == "" {
		ref = version.Lineage.Dataset
		if ref == "" {
			return nil, structs.Errorf(structs.CodeInvalid, "reference_dataset is required: version %d of %s records no training dataset", version.Version, spec.Deployment)
		}
	}
	dsName, dsVersion, err := structs.ParseDatasetRef("reference_dataset", ref)
	if err != nil {
		return nil, err
	}
	if dsVersion == 0 {
		ds, err := txn.Dataset(dsName)
		if err != nil {
			return nil, err
		}
		dsVersion = ds.LatestVersion
	}
	dv, err := txn.DatasetVersion(dsName, dsVersion)
	if err != nil {
		return nil, err
	}
	m := &structs.Monitor{Spec: *spec, Reference: dv.Ref()}
	if len(spec.FeatureColumns) > 0 {
		for i, c := range spec.FeatureColumns {
			if columnIndex(dv.Columns, c) < 0 {
				return nil, structs.Errorf(structs.CodeInvalid, "feature_columns[%d]: dataset %s has no column %q", i, dv.Ref(), c)
			}
		}
		m.Columns = slices.Clone(spec.FeatureColumns)
	} else {
		names := version.Schema.FeatureNames
		if len(names) == 0 {
			return nil, structs.Errorf(structs.CodeInvalid, "feature_columns is required: version %d of %s does not name its features", version.Version, spec.Deployment)
		}
		for _, n := range names {
			i := slices.IndexFunc(dv.Columns, func(c structs.DatasetColumn) bool { return strings.EqualFold(c.Name, n) })
			if i < 0 {
				return nil, structs.Errorf(structs.CodeInvalid, "feature_columns: dataset %s has no column named like the model's feature %q; give feature_columns", dv.Ref(), n)
			}
			m.Columns = append(m.Columns, dv.Columns[i].Name)
		}
	}
	if w := inputWidth(version.Schema); w > 0 && w != len(m.Columns) {
		return nil, structs.Errorf(structs.CodeInvalid, "feature_columns names %d columns; the model takes %d values per row", len(m.Columns), w)
	}
	return m, nil
}

// inputWidth is the values per row of a schema's inputs, or 0 when a shape
// leaves it open.
func inputWidth(s structs.Schema) int {
	w := 0
	for _, in := range s.Inputs {
		n := 1
		for _, d := range in.Shape[min(1, len(in.Shape)):] {
			if d < 0 {
				return 0
			}
			n *= d
		}
		w += n
	}
	return w
}

func (a *Agent) handleMonitorGet(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	serveRead(a, w, r, func(txn *raftfsm.Txn) (*structs.Monitor, error) { return txn.Monitor(name) })
}

func (a *Agent) handleMonitorList(w http.ResponseWriter, r *http.Request) {
	serveList(a, w, r, structs.KindMonitor,
		func(txn *raftfsm.Txn) func(string, int) ([]*structs.Monitor, string, error) {
			return func(string, int) ([]*structs.Monitor, string, error) {
				ms, err := txn.Monitors()
				return ms, "", err
			}
		},
		func(m *structs.Monitor) string { return m.Spec.Deployment }, func(m *structs.Monitor) *structs.Monitor { return m })
}

func (a *Agent) handleMonitorDelete(w http.ResponseWriter, r *http.Request) {
	serveWrite[struct{}](a, w, r, structs.MonitorDeleteType, &structs.NameRequest{Name: r.PathValue("name")}, http.StatusOK)
}

// handleMonitorCheck runs a drift check now, records it and returns it.
func (a *Agent) handleMonitorCheck(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	txn := a.fsm.ReadTxn()
	m, err := txn.Monitor(name)
	txn.Discard()
	if err != nil {
		writeError(w, err)
		return
	}
	c, err := a.driftCheck(r.Context(), m, time.Now())
	if err != nil {
		writeError(w, err)
		return
	}
	if _, err := a.propose(r.Context(), structs.DriftCheckPutType, &structs.DriftCheckPutRequest{Check: *c}, nil); err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, c)
}

func (a *Agent) handleDriftList(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	since := time.Now().Add(-24 * time.Hour)
	if s := r.URL.Query().Get("since"); s != "" {
		t, err := parseWhen("since", s, time.Now())
		if err != nil {
			writeError(w, err)
			return
		}
		since = t
	}
	serveRead(a, w, r, func(txn *raftfsm.Txn) (map[string]any, error) {
		if _, err := txn.Monitor(name); err != nil {
			return nil, err
		}
		cs, err := txn.DriftChecks(name, since, structs.MaxDriftChecks)
		if cs == nil {
			cs = []*structs.DriftCheck{}
		}
		return map[string]any{"deployment": name, "items": cs}, err
	})
}

// Alert rules and alerts.

// monitorFeatures lists the features a deployment's monitor tests (none
// without a monitor).
func monitorFeatures(txn *raftfsm.Txn, deployment string) []string {
	m, err := txn.Monitor(deployment)
	if err != nil {
		return nil
	}
	return m.Columns
}

func (a *Agent) handleAlertRulePut(w http.ResponseWriter, r *http.Request) {
	var spec structs.AlertRuleSpec
	if err := a.decodeBody(w, r, &spec); err != nil {
		writeError(w, err)
		return
	}
	if err := nameFromPath("name", &spec.Name, r.PathValue("name")); err != nil {
		writeError(w, err)
		return
	}
	spec.Defaults()
	if err := spec.Validate(); err != nil {
		writeError(w, err)
		return
	}
	if err := a.authorize(r, structs.KindMonitor, spec.Deployment, structs.AccessWrite); err != nil {
		writeError(w, err)
		return
	}
	txn := a.fsm.ReadTxn()
	_, derr := txn.Deployment(spec.Deployment)
	features := monitorFeatures(txn, spec.Deployment)
	txn.Discard()
	if derr != nil {
		writeError(w, structs.Errorf(structs.CodeInvalid, "deployment: %v", derr))
		return
	}
	if _, err := monitor.Compile(spec.Condition, features); err != nil {
		writeError(w, err)
		return
	}
	for i, act := range spec.Actions {
		if act.Kind == structs.ActionRunPipeline {
			if err := a.authorize(r, structs.KindPipeline, act.Pipeline, structs.AccessWrite); err != nil {
				writeError(w, structs.Errorf(structs.CodePermissionDenied, "actions[%d]: %v", i, err))
				return
			}
		}
		if act.Kind == structs.ActionRollback {
			if err := a.authorize(r, structs.KindDeployment, spec.Deployment, structs.AccessWrite); err != nil {
				writeError(w, structs.Errorf(structs.CodePermissionDenied, "actions[%d]: %v", i, err))
				return
			}
		}
	}
	rule := structs.AlertRule{Spec: spec, CreatedAt: time.Now().UTC()}
	if id := acl.FromContext(r.Context()); id != nil && id.Token != nil {
		rule.AppliedBy, rule.AppliedByHash = id.Token.AccessorID, id.Token.SecretHash
	}
	serveWrite[structs.AlertRule](a, w, r, structs.AlertRulePutType, &structs.AlertRulePutRequest{Rule: rule}, http.StatusOK)
}

// ruleFor reads a rule and checks the caller may see (or change) its
// deployment's monitoring.
func (a *Agent) ruleFor(r *http.Request, name string, want structs.ACLAccess) (*structs.AlertRule, error) {
	txn := a.fsm.ReadTxn()
	rule, err := txn.AlertRule(name)
	txn.Discard()
	if err != nil {
		return nil, err
	}
	if err := a.authorize(r, structs.KindMonitor, rule.Spec.Deployment, want); err != nil {
		return nil, err
	}
	return rule, nil
}

func (a *Agent) handleAlertRuleGet(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if _, err := a.ruleFor(r, name, structs.AccessRead); err != nil {
		writeError(w, err)
		return
	}
	serveRead(a, w, r, func(txn *raftfsm.Txn) (*structs.AlertRule, error) { return txn.AlertRule(name) })
}

func (a *Agent) handleAlertRuleDelete(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if _, err := a.ruleFor(r, name, structs.AccessWrite); err != nil {
		writeError(w, err)
		return
	}
	serveWrite[struct{}](a, w, r, structs.AlertRuleDeleteType, &structs.NameRequest{Name: name}, http.StatusOK)
}

func (a *Agent) handleAlertRuleList(w http.ResponseWriter, r *http.Request) {
	txn, err := a.readTxn(w, r)
	if err != nil {
		writeError(w, err)
		return
	}
	defer txn.Discard()
	rules, err := txn.AlertRules()
	if err != nil {
		writeError(w, err)
		return
	}
	items := []*structs.AlertRule{}
	for _, rule := range rules {
		if a.allowed(r, structs.KindMonitor, rule.Spec.Deployment, structs.AccessRead) {
			items = append(items, rule)
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"items": items})
}

// handleAlertList serves GET /v1/alerts: every rule's alert the caller may
// read, firing first; ?state= keeps one state.
func (a *Agent) handleAlertList(w http.ResponseWriter, r *http.Request) {
	state := r.URL.Query().Get("state")
	switch state {
	case "", structs.AlertInactive, structs.AlertPending, structs.AlertFiring, structs.AlertResolved:
	default:
		writeError(w, structs.Errorf(structs.CodeInvalid, "state %q is unknown: use inactive, pending, firing or resolved", state))
		return
	}
	txn, err := a.readTxn(w, r)
	if err != nil {
		writeError(w, err)
		return
	}
	defer txn.Discard()
	alerts, err := txn.Alerts()
	if err != nil {
		writeError(w, err)
		return
	}
	items := []*structs.Alert{}
	for _, al := range alerts {
		if (state == "" || al.State == state) && a.allowed(r, structs.KindMonitor, al.Deployment, structs.AccessRead) {
			items = append(items, al)
		}
	}
	order := map[string]int{structs.AlertFiring: 0, structs.AlertPending: 1, structs.AlertResolved: 2, structs.AlertInactive: 3}
	slices.SortStableFunc(items, func(x, y *structs.Alert) int { return order[x.State] - order[y.State] })
	writeJSON(w, http.StatusOK, map[string]any{"items": items})
}

func (a *Agent) handleAlertAck(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if _, err := a.ruleFor(r, name, structs.AccessWrite); err != nil {
		writeError(w, err)
		return
	}
	by := "anonymous"
	if id := acl.FromContext(r.Context()); id != nil && id.Token != nil {
		by = id.Token.AccessorID
	}
	serveWrite[structs.Alert](a, w, r, structs.AlertAckType, &structs.AlertAckRequest{Rule: name, By: by, At: time.Now().UTC()}, http.StatusOK)
}

// newestVersion is the highest version a deployment's traffic names.
func newestVersion(d *structs.Deployment) uint64 {
	var v uint64
	for _, s := range d.Traffic.Versions {
		v = max(v, s.Version)
	}
	return v
}
