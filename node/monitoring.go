package node

import (
	"context"
	"math/rand/v2"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kilnml/kiln/actors/serving"
	"github.com/kilnml/kiln/ml"
	"github.com/kilnml/kiln/node/internal/predlog"
	"github.com/kilnml/kiln/raftfsm"
	"github.com/kilnml/kiln/transport"
)

// monitoring is a node's share of monitoring (DESIGN.md §8): its prediction
// log, the sample rates it logs at, and its pending labels.
type monitoring struct {
	log *predlog.Store

	// rates is each monitored deployment's sample_rate, as of the monitors
	// table's index it holds; a request that finds the index moved reads
	// them again.
	rates atomic.Pointer[sampleRates]
	index func() uint64

	logged, dropped prometheus.Counter
}

func (a *Agent) setupMonitoring() error {
	st, err := predlog.Open(predlog.Options{
		Dir:       filepath.Join(a.cfg.DataDir, "predlog"),
		Retention: a.cfg.Monitoring.Retention,
		MaxBytes:  a.cfg.Monitoring.MaxLogBytes,
		Grace:     a.cfg.Monitoring.LabelGrace,
		Logger:    a.logger.Named("predlog"),
	})
	if err != nil {
		return err
	}
	m := &monitoring{log: st, index: a.fsm.IndexFunc(raftfsm.TableMonitors)}
	m.rates.Store(&sampleRates{index: ^uint64(0)})
	m.logged = prometheus.NewCounter(prometheus.CounterOpts{Name: "kiln_prediction_log_written_total", Help: "Requests this node queued to its prediction log."})
	m.dropped = prometheus.NewCounter(prometheus.CounterOpts{Name: "kiln_prediction_log_dropped_total", Help: "Sampled requests dropped because the prediction log's queue was full."})
	a.serving.registry.MustRegister(m.logged, m.dropped, alertCollector{a})
	a.monitoring = m
	return nil
}

// sampleRate is the share of deployment's requests this node logs: its
// monitor's sample_rate, or monitoring.sample_rate without one.
func (a *Agent) sampleRate(deployment string) float64 {
	m := a.monitoring
	rates := m.rates.Load()
	if idx := m.index(); idx != rates.index {
		txn := a.fsm.ReadTxn()
		mons, err := txn.Monitors()
		txn.Discard()
		if err == nil {
			rates = &sampleRates{index: idx, rates: map[string]float64{}}
			for _, mon := range mons {
				rates.rates[mon.Spec.Deployment] = mon.Spec.SampleRate
			}
			m.rates.Store(rates)
		}
	}
	if r, ok := rates.rates[deployment]; ok {
		return r
	}
	return a.cfg.Monitoring.SampleRate
}

type sampleRates struct {
	index uint64
	rates map[string]float64
}

// logPrediction writes a served request to the prediction log when the
// deployment's sample rate picks it. It never blocks: a full queue drops
// the record.
func (a *Agent) logPrediction(id string, target *serving.Target, start time.Time, inputs, outputs []ml.Tensor) {
	rate := a.sampleRate(target.Deployment.Name)
	if rate <= 0 || (rate < 1 && rand.Float64() >= rate) {
		return
	}
	rec := predlog.Record{ID: id, At: start, Deployment: target.Deployment.Name, Version: target.Version.Version,
		Latency: time.Since(start), Inputs: inputs, Outputs: outputs}
	if a.monitoring.log.Append(&rec) {
		a.monitoring.logged.Inc()
	} else {
		a.monitoring.dropped.Inc()
	}
}

// monitoringLoop trims this node's log to its size bound, and retries the
// labels that matched nothing, on every node.
func (a *Agent) monitoringLoop() {
	trim := time.NewTicker(time.Minute)
	defer trim.Stop()
	labels := time.NewTicker(5 * time.Second)
	defer labels.Stop()
	for {
		select {
		case <-a.ctx.Done():
			return
		case <-trim.C:
			if n, err := a.monitoring.log.Trim(); err != nil {
				a.logger.Warn("prediction log: trim failed", "error", err)
			} else if n > 0 {
				a.logger.Info("prediction log: deleted the oldest records to stay under max_log_bytes", "records", n)
				a.monitoring.log.RunGC()
			}
		case <-labels.C:
			a.matchPending(a.ctx)
		}
	}
}

// fanOut calls method with args on every alive node but this one, and
// local for this one, in parallel, within timeout. It returns the replies
// of the nodes that answered (this node's first) and how many did not.
func fanOut[R any](ctx context.Context, a *Agent, method string, args any, timeout time.Duration, local func() (R, error)) ([]R, int) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	type result struct {
		r   R
		err error
	}
	members := a.gossip.alive()
	results := make(chan result, len(members))
	asked := 0
	for _, m := range members {
		if m.Meta.ID == a.id {
			continue
		}
		asked++
		go func(addr string) {
			var reply R
			err := a.trans.Call(ctx, addr, method, args, &reply)
			results <- result{reply, err}
		}(m.Meta.RPCAddr)
	}
	var out []R
	missing := 0
	if r, err := local(); err == nil {
		out = append(out, r)
	} else {
		a.logger.Warn("monitoring: local read failed", "method", method, "error", err)
		missing++
	}
	for range asked {
		res := <-results
		if res.err != nil {
			missing++
			continue
		}
		out = append(out, res.r)
	}
	return out, missing
}

// decodeArgs decodes an RPC's arguments, as a coded error naming method.
func decodeArgs(dec transport.Decoder, method string, args any) error {
	if err := dec.Decode(args); err != nil {
		return badRPC(method, err)
	}
	return nil
}
