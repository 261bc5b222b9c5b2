package gbdt

import (
	"context"
	"math"
)

// ghPair is the sum of the gradients and of the hessians of some rows.
type ghPair struct{ g, h float64 }

func (a ghPair) add(b ghPair) ghPair { return ghPair{a.g + b.g, a.h + b.h} }
func (a ghPair) sub(b ghPair) ghPair { return ghPair{a.g - b.g, a.h - b.h} }

// kRtEps is the smallest gain worth a split, XGBoost's kRtEps.
const kRtEps = 1e-6

// histBudget bounds the memory the histograms of open nodes may take. Past
// it a node keeps only its best split and its children's histograms are
// built from their rows rather than by subtraction from its own.
const histBudget = 256 << 20

// split is the best way found to split a node.
type split struct {
	gain    float64
	feature int32
	// bin: rows whose value is in a bin <= bin go left; -1 sends every
	// non-missing value right.
	bin         int32
	defaultLeft bool
	left, right ghPair
}

// growNode is a node of the tree being grown: its rows are
// grower.rows[begin:end].
type growNode struct {
	id         int32 // index in grower.nodes
	begin, end int
	depth      int
	sum        ghPair
	hist       []ghPair // nil when not built or given back
	best       split
	splits     bool // best is a split worth making
}

func (n *growNode) count() int { return n.end - n.begin }

// grower grows one tree from the gradients of the rows of one round. It is
// reused across trees to keep its buffers.
type grower struct {
	m   *binMatrix
	cfg *config
	w   *workers

	gh      []ghPair // gradient pair of each training row for this tree
	rows    []uint32 // the sampled rows, partitioned node by node
	scratch []uint32 // partition buffer, aligned with rows
	ghRows  []ghPair // gh gathered in the order of rows, for a histogram build
	feats   []int    // the features this tree may split on, ascending

	pool    [][]ghPair // histograms given back, for reuse
	live    int        // histograms held by open nodes
	maxLive int

	nodes []treeNode
	all   []*growNode
	grid  float64 // leaf values are multiples of grid (see leafGrid)
}

func newGrower(m *binMatrix, cfg *config, w *workers, grid float64) *grower {
	histBytes := m.offset[m.cols] * 16
	return &grower{
		m:       m,
		cfg:     cfg,
		w:       w,
		rows:    make([]uint32, m.rows),
		scratch: make([]uint32, m.rows),
		ghRows:  make([]ghPair, m.rows),
		maxLive: max(4, histBudget/max(histBytes, 1)),
		grid:    grid,
	}
}

// grow grows a tree on the rows g.rows[:n] with gradients gh and features
// feats, and returns it. Until the next grow, forLeaves visits the rows of
// each of its leaves.
func (g *grower) grow(ctx context.Context, n int, gh []ghPair, feats []int) (*tree, error) {
	g.gh, g.feats = gh, feats
	g.nodes = g.nodes[:0]
	g.all = g.all[:0]
	root := &growNode{begin: 0, end: n}
	for _, r := range g.rows[:n] {
		root.sum = root.sum.add(gh[r])
	}
	g.nodes = append(g.nodes, g.leafNode(root.sum, -1))
	g.all = append(g.all, root)
	if g.splittable(root) {
		root.hist = g.alloc()
		g.buildHists([]*growNode{root})
		g.evaluate(root)
	}
	if !root.splits {
		g.release(root)
	}
	var err error
	if g.cfg.maxLeaves > 0 {
		err = g.growBestFirst(ctx, root)
	} else {
		err = g.growDepthwise(ctx, root)
	}
	for _, nd := range g.all {
		g.release(nd)
	}
	if err != nil {
		return nil, err
	}
	t := &tree{nodes: make([]treeNode, len(g.nodes))}
	copy(t.nodes, g.nodes)
	return t, nil
}

// forLeaves calls fn with the value and the rows of each leaf of the tree
// grow returned last.
func (g *grower) forLeaves(fn func(value float32, rows []uint32)) {
	for _, nd := range g.all {
		if n := &g.nodes[nd.id]; n.left < 0 {
			fn(n.value, g.rows[nd.begin:nd.end])
		}
	}
}

// growDepthwise splits every splittable node of a level before the next,
// as XGBoost's depthwise policy does.
func (g *grower) growDepthwise(ctx context.Context, root *growNode) error {
	var level []*growNode
	if root.splits {
		level = append(level, root)
	}
	// A level is expanded in chunks so that the children's histograms in
	// flight stay within the budget too.
	chunk := max(1, min(64, g.maxLive/4))
	for len(level) > 0 {
		var next []*growNode
		for lo := 0; lo < len(level); lo += chunk {
			if err := ctx.Err(); err != nil {
				return err
			}
			for _, c := range g.expand(level[lo:min(lo+chunk, len(level))]) {
				if c.splits {
					next = append(next, c)
				}
			}
		}
		level = next
	}
	return nil
}

// growBestFirst always splits the open node of the largest gain (the first
// created on ties) until the tree has maxLeaves leaves, as XGBoost's
// lossguide policy does.
func (g *grower) growBestFirst(ctx context.Context, root *growNode) error {
	var open []*growNode
	if root.splits {
		open = append(open, root)
	}
	for leaves := 1; leaves < g.cfg.maxLeaves && len(open) > 0; leaves++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		best := 0
		for i, nd := range open {
			if nd.best.gain > open[best].best.gain {
				best = i
			}
		}
		nd := open[best]
		open = append(open[:best], open[best+1:]...)
		for _, c := range g.expand([]*growNode{nd}) {
			if c.splits {
				open = append(open, c)
			}
		}
	}
	return nil
}

// splittable reports whether a node may be split at all: it has two rows,
// room below it, and hessian enough for two children.
func (g *grower) splittable(n *growNode) bool {
	return n.count() >= 2 &&
		(g.cfg.maxDepth == 0 || n.depth < g.cfg.maxDepth) &&
		n.sum.h >= 2*g.cfg.minChildWeight
}

// expand splits the given nodes, each of which has a split, and returns
// their children in order, with their best splits found.
func (g *grower) expand(parents []*growNode) []*growNode {
	nl := g.partition(parents)

	children := make([]*growNode, 0, 2*len(parents))
	for i, p := range parents {
		l := &growNode{begin: p.begin, end: p.begin + nl[i], depth: p.depth + 1, sum: p.best.left}
		r := &growNode{begin: p.begin + nl[i], end: p.end, depth: p.depth + 1, sum: p.best.right}
		g.setSplit(p, l, r)
		children = append(children, l, r)
		g.all = append(g.all, l, r)
	}

	// Histograms: where the parent's is at hand the smaller child's is
	// built from its rows and the larger one's is the parent's minus it.
	type subtraction struct{ dst, parent, built *growNode }
	var build []*growNode
	var subs []subtraction
	for i, p := range parents {
		l, r := children[2*i], children[2*i+1]
		small, large := l, r
		if r.count() < l.count() {
			small, large = r, l
		}
		if p.hist != nil && g.splittable(large) {
			small.hist, large.hist = g.alloc(), g.alloc()
			build = append(build, small)
			subs = append(subs, subtraction{large, p, small})
			continue
		}
		for _, c := range []*growNode{l, r} {
			if g.splittable(c) {
				c.hist = g.alloc()
				build = append(build, c)
			}
		}
	}
	g.buildHists(build)
	g.w.run(len(subs), func(i int) {
		s := subs[i]
		for _, f := range g.feats {
			lo, hi := g.m.offset[f], g.m.offset[f+1]
			dst, par, got := s.dst.hist[lo:hi], s.parent.hist[lo:hi], s.built.hist[lo:hi]
			for j := range dst {
				dst[j] = par[j].sub(got[j])
			}
		}
	})
	for _, p := range parents {
		g.release(p)
	}

	var eval []*growNode
	for _, c := range children {
		if c.hist != nil && g.splittable(c) {
			eval = append(eval, c)
		}
	}
	g.w.run(len(eval), func(i int) { g.evaluate(eval[i]) })
	for i := len(children) - 1; i >= 0; i-- {
		if c := children[i]; !c.splits || g.live > g.maxLive {
			g.release(c)
		}
	}
	return children
}

// partChunk is the number of rows of one partition or gather task: large
// nodes are cut into chunks so that all threads share them.
const partChunk = 16384

// partition reorders the rows of each parent, whose split is its best,
// so that the rows going left come first, keeping their order (so rows stay
// ascending and later reads of the codes stay near sequential), and returns
// how many go left in each. Each chunk of a node's rows is split into
// scratch (left rows from the chunk's start, right rows from its end), then
// the pieces are copied back in chunk order.
func (g *grower) partition(parents []*growNode) []int {
	type chunk struct {
		node        int
		lo, hi      int
		nl          int
		leftBefore  int // left rows of the node's earlier chunks
		rightBefore int
	}
	var chunks []chunk
	for i, p := range parents {
		for lo := p.begin; lo < p.end; lo += partChunk {
			chunks = append(chunks, chunk{node: i, lo: lo, hi: min(lo+partChunk, p.end)})
		}
	}
	// Where each code goes, per parent: a table lookup instead of
	// comparisons keeps the loop free of unpredictable branches.
	goLeft := make([][256]uint8, len(parents))
	for i, p := range parents {
		s := &p.best
		for c := range 256 {
			if int32(c) <= s.bin {
				goLeft[i][c] = 1
			}
		}
		if miss := g.m.missCode[s.feature]; miss >= 0 {
			goLeft[i][miss] = 0
			if s.defaultLeft {
				goLeft[i][miss] = 1
			}
		}
	}
	g.w.run(len(chunks), func(i int) {
		c := &chunks[i]
		col := g.m.col(int(parents[c.node].best.feature))
		lut := &goLeft[c.node]
		tmp := g.scratch[c.lo:c.hi]
		// Each row is written to both ends; the count of the side it
		// belongs to moves past it and the other end's copy is overwritten
		// later or lies outside the final ranges.
		nl, nr := 0, len(tmp)
		for _, r := range g.rows[c.lo:c.hi] {
			left := int(lut[col[r]])
			tmp[nl] = r
			tmp[nr-1] = r
			nl += left
			nr -= 1 - left
		}
		c.nl = nl
	})
	nl := make([]int, len(parents))
	nodeRight := make([]int, len(parents))
	for i := range chunks {
		c := &chunks[i]
		c.leftBefore, c.rightBefore = nl[c.node], nodeRight[c.node]
		nl[c.node] += c.nl
		nodeRight[c.node] += c.hi - c.lo - c.nl
	}
	g.w.run(len(chunks), func(i int) {
		c := &chunks[i]
		p := parents[c.node]
		tmp := g.scratch[c.lo:c.hi]
		copy(g.rows[p.begin+c.leftBefore:], tmp[:c.nl])
		// The right rows sit at the chunk's end in reverse order.
		dst := g.rows[p.begin+nl[c.node]+c.rightBefore:]
		right := tmp[c.nl:]
		for j := range right {
			dst[j] = right[len(right)-1-j]
		}
	})
	return nl
}

// setSplit records p's split in the tree and adds its children l and r as
// leaves.
func (g *grower) setSplit(p, l, r *growNode) {
	s := &p.best
	l.id, r.id = int32(len(g.nodes)), int32(len(g.nodes)+1)
	n := &g.nodes[p.id]
	n.left, n.right = l.id, r.id
	n.feature, n.bin, n.defaultLeft = s.feature, s.bin, s.defaultLeft
	n.gain = float32(s.gain)
	if s.bin < 0 {
		n.cond = g.m.low[s.feature]
	} else {
		n.cond = g.m.cuts[s.feature][s.bin]
	}
	g.nodes = append(g.nodes, g.leafNode(l.sum, p.id), g.leafNode(r.sum, p.id))
}

// leafNode returns a leaf for rows with gradient sums sum: its value is
// XGBoost's optimal weight -G/(H+lambda), times the learning rate, rounded
// to a multiple of the grower's grid (see leafGrid).
func (g *grower) leafNode(sum ghPair, parent int32) treeNode {
	w := 0.0
	if d := sum.h + g.cfg.lambda; d > 0 {
		w = -sum.g / d * g.cfg.eta
	}
	return treeNode{left: -1, right: -1, parent: parent, value: float32(onGrid(w, g.grid)), hess: float32(sum.h)}
}

// onGrid rounds v to a multiple of grid, a power of two.
func onGrid(v, grid float64) float64 { return math.Round(v/grid) * grid }

// buildHists builds the histograms of nodes from their rows. The work is
// cut into tasks of at most partChunk rows of one node, each summing its
// rows in order into a histogram of its own (the node's for its first
// chunk); the chunks of a node are then added up in order. Chunks are cut
// at fixed row counts, so the sums do not depend on the number of threads
// or on scheduling.
func (g *grower) buildHists(nodes []*growNode) {
	if len(nodes) == 0 {
		return
	}
	// The root of a tree on all rows has rows 0, 1, ..., so its gradient
	// pairs are already in order.
	grads := g.ghRows
	if len(nodes) == 1 && nodes[0].id == 0 && nodes[0].count() == g.m.rows {
		grads = g.gh
	} else {
		g.gather(nodes)
	}
	type task struct {
		n      *growNode
		lo, hi int
		hist   []ghPair
	}
	var tasks []task
	var merges [][]task // the tasks of each node of more than one chunk
	for _, n := range nodes {
		first := len(tasks)
		for lo := n.begin; lo < n.end; lo += partChunk {
			h := n.hist
			if lo > n.begin {
				h = g.alloc()
			}
			tasks = append(tasks, task{n, lo, min(lo+partChunk, n.end), h})
		}
		if len(tasks)-first > 1 {
			merges = append(merges, tasks[first:len(tasks):len(tasks)])
		}
	}
	offs := make([]int, len(g.feats))
	for j, f := range g.feats {
		offs[j] = g.m.offset[f]
	}
	g.w.run(len(tasks), func(i int) {
		t := tasks[i]
		for _, f := range g.feats {
			clear(t.hist[g.m.offset[f]:g.m.offset[f+1]])
		}
		histRows(t.hist, offs, g.feats, g.m.rowCodes, g.m.cols, g.rows[t.lo:t.hi], grads[t.lo:t.hi])
	})
	nf := len(g.feats)
	g.w.run(len(merges)*nf, func(i int) {
		ts, f := merges[i/nf], g.feats[i%nf]
		lo, hi := g.m.offset[f], g.m.offset[f+1]
		dst := ts[0].hist[lo:hi]
		for _, t := range ts[1:] {
			for j, v := range t.hist[lo:hi] {
				dst[j] = dst[j].add(v)
			}
		}
	})
	for _, ts := range merges {
		for _, t := range ts[1:] {
			g.pool = append(g.pool, t.hist)
			g.live--
		}
	}
}

// gather copies the gradient pairs of the nodes' rows into ghRows, in the
// order of rows, so the histogram build reads them sequentially.
func (g *grower) gather(nodes []*growNode) {
	type chunk struct{ lo, hi int }
	var chunks []chunk
	for _, n := range nodes {
		for lo := n.begin; lo < n.end; lo += partChunk {
			chunks = append(chunks, chunk{lo, min(lo+partChunk, n.end)})
		}
	}
	g.w.run(len(chunks), func(i int) {
		c := chunks[i]
		dst := g.ghRows[c.lo:c.hi]
		for j, r := range g.rows[c.lo:c.hi] {
			dst[j] = g.gh[r]
		}
	})
}

// histRows adds gh[i] to the slot of row rows[i]'s code for each feature
// feats[j], whose slots start at offs[j] in h.
func histRows(h []ghPair, offs []int, feats []int, codes []uint8, cols int, rows []uint32, gh []ghPair) {
	if len(feats) == 0 {
		return
	}
	gh = gh[:len(rows)]
	offs = offs[:len(feats)]
	if f0 := feats[0]; feats[len(feats)-1]-f0 == len(feats)-1 {
		// The features are a run f0, f0+1, ...: each row's codes for them
		// are adjacent, and the loop needs no feature list (a third faster).
		for i, r := range rows {
			p := gh[i]
			rc := codes[int(r)*cols+f0 : int(r)*cols+f0+len(offs)]
			for j, c := range rc {
				s := &h[offs[j]+int(c)]
				s.g += p.g
				s.h += p.h
			}
		}
		return
	}
	for i, r := range rows {
		p := gh[i]
		rc := codes[int(r)*cols : int(r)*cols+cols]
		for j, f := range feats {
			s := &h[offs[j]+int(rc[f])]
			s.g += p.g
			s.h += p.h
		}
	}
}

// evaluate finds node n's best split from its histogram: for each feature
// and each cut, the gain of sending the missing values left and of sending
// them right, as XGBoost's hist method does:
//
//	gain = G_L²/(H_L+λ) + G_R²/(H_R+λ) - G²/(H+λ)
//
// where each child needs a hessian sum of at least min_child_weight. A split
// is worth making when its gain is above gamma and kRtEps. The first
// feature, cut and direction reach the best gain on ties.
func (g *grower) evaluate(n *growNode) {
	lambda, mcw := g.cfg.lambda, g.cfg.minChildWeight
	sum := n.sum
	parent := sum.g * sum.g / (sum.h + lambda)
	best := split{gain: math.Inf(-1)}
	try := func(f, bin int, defaultLeft bool, left ghPair) {
		right := sum.sub(left)
		if left.h < mcw || right.h < mcw || left.h <= 0 || right.h <= 0 {
			return
		}
		gain := left.g*left.g/(left.h+lambda) + right.g*right.g/(right.h+lambda) - parent
		if gain > best.gain {
			best = split{gain: gain, feature: int32(f), bin: int32(bin), defaultLeft: defaultLeft, left: left, right: right}
		}
	}
	for _, f := range g.feats {
		h := n.hist[g.m.offset[f]:g.m.offset[f+1]]
		nb := g.m.numBins(f)
		miss, hasMiss := g.missing(n, f)
		if hasMiss && g.m.lowOK[f] {
			try(f, -1, true, miss)
		}
		var acc ghPair
		for b := range nb - 1 {
			acc = acc.add(h[b])
			try(f, b, false, acc)
			if hasMiss {
				try(f, b, true, acc.add(miss))
			}
		}
	}
	n.best = best
	n.splits = best.gain > kRtEps && best.gain > g.cfg.gamma
	if _, ok := g.missing(n, int(best.feature)); n.splits && !ok {
		// No row of the node lacks the feature, so the data says nothing
		// about where a missing value should go: send it with the bulk
		// (the heavier child).
		n.best.defaultLeft = best.left.h >= best.right.h
	}
}

// missing returns the gradient sums of node n's rows that lack feature f,
// and whether there are any. Every row has a positive hessian, but a
// histogram made by subtraction can hold rounding residue (chunks of rows
// are summed separately, so a parent's and a child's sums of the same rows
// may round differently), so a missing slot counts only above a tiny share
// of the node's hessian.
func (g *grower) missing(n *growNode, f int) (ghPair, bool) {
	if g.m.missCode[f] < 0 {
		return ghPair{}, false
	}
	miss := n.hist[g.m.offset[f]+g.m.numBins(f)]
	return miss, miss.h > 1e-10*n.sum.h
}

func (g *grower) alloc() []ghPair {
	g.live++
	if k := len(g.pool); k > 0 {
		h := g.pool[k-1]
		g.pool = g.pool[:k-1]
		return h
	}
	return make([]ghPair, g.m.offset[g.m.cols])
}

func (g *grower) release(n *growNode) {
	if n.hist == nil {
		return
	}
	g.pool = append(g.pool, n.hist)
	n.hist = nil
	g.live--
}
