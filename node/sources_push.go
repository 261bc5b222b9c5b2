package node

import (
	"context"
	"sync"
	"time"

	"github.com/kilnml/kiln/actors/data"
	"github.com/kilnml/kiln/raftfsm/structs"
)

// Push sources' datasets. A push source has no actor: producers send its
// records to any node. Each node keeps its own open segment per push
// source, the records (and quarantined ones) it committed, and stores it
// as the source's dataset's next version once it holds data.SegmentRows
// records, is data.SegmentAge old, or the source's spec changed; and when
// the agent stops. So a push source's versions come from several nodes,
// each holding what its node took. A node that dies loses its open
// segment's file (the records themselves are committed, as feature values
// and in the source's counts): that is the cost of not sending every
// record through Raft twice.
type pushSegments struct {
	a *Agent

	mu   sync.Mutex
	open map[string]*pushSegment // guarded by mu; by source name
}

// pushSegment is one source's open segment on this node.
type pushSegment struct {
	mu      sync.Mutex // guards out and rows: writes and the seal
	out     *datasetOutput
	modify  uint64 // the source's ModifyIndex when opened
	started time.Time
	rows    int64
}

func newPushSegments(a *Agent) *pushSegments {
	return &pushSegments{a: a, open: map[string]*pushSegment{}}
}

// write adds a committed batch of source s to its segment, sealing the
// segment first when s's spec changed since it opened, and after when it
// is full.
func (p *pushSegments) write(ctx context.Context, s *structs.Source, prep *data.Prepared) error {
	if len(prep.Accepted) == 0 && len(prep.Quarantined) == 0 {
		return nil
	}
	seg := p.segment(s.Spec.Name)
	seg.mu.Lock()
	defer seg.mu.Unlock()
	if seg.out != nil && seg.modify != s.ModifyIndex {
		p.sealLocked(ctx, seg)
	}
	if seg.out == nil {
		out, err := p.a.newDatasetOutput(s)
		if err != nil {
			return err
		}
		seg.out, seg.modify, seg.started, seg.rows = out, s.ModifyIndex, time.Now(), 0
	}
	if err := seg.out.Write(prep.Accepted); err != nil {
		return err
	}
	if err := seg.out.Quarantine(prep.Quarantined); err != nil {
		return err
	}
	seg.rows += int64(len(prep.Accepted))
	if seg.rows >= data.SegmentRows {
		p.sealLocked(ctx, seg)
	}
	return nil
}

func (p *pushSegments) segment(name string) *pushSegment {
	p.mu.Lock()
	defer p.mu.Unlock()
	seg := p.open[name]
	if seg == nil {
		seg = &pushSegment{}
		p.open[name] = seg
	}
	return seg
}

// sealLocked stores the segment as a dataset version; a failure is logged
// (the records are committed; only this copy of them is lost).
func (p *pushSegments) sealLocked(ctx context.Context, seg *pushSegment) {
	out := seg.out
	seg.out, seg.rows = nil, 0
	ref, err := out.Close(context.WithoutCancel(ctx), true, nil)
	if err != nil {
		p.a.logger.Warn("storing a push source's segment failed", "source", out.source.Spec.Name, "error", err)
		return
	}
	if ref != "" {
		p.a.logger.Info("push segment stored", "source", out.source.Spec.Name, "dataset", ref)
	}
}

// seal stores every open segment older than age (all, with age 0).
func (p *pushSegments) seal(ctx context.Context, age time.Duration) {
	p.mu.Lock()
	segs := make([]*pushSegment, 0, len(p.open))
	for _, seg := range p.open {
		segs = append(segs, seg)
	}
	p.mu.Unlock()
	for _, seg := range segs {
		seg.mu.Lock()
		if seg.out != nil && time.Since(seg.started) >= age {
			p.sealLocked(ctx, seg)
		}
		seg.mu.Unlock()
	}
}

// run seals aged segments until ctx ends.
func (p *pushSegments) run(ctx context.Context) {
	tick := time.NewTicker(time.Minute)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			p.seal(ctx, data.SegmentAge)
		}
	}
}
