package serving

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kilnml/kiln/actors"
	"github.com/kilnml/kiln/cluster-tests/testutil"
	"github.com/kilnml/kiln/ml"
	"github.com/kilnml/kiln/raftfsm/structs"
)

// Marker values: a row holding one makes sumModel fail or panic.
const (
	badMarker   = -1
	panicMarker = -2
)

// sumModel is a real model: it answers each row of its inputs with the sum of
// the row's values (across every input), as output "y" of shape [rows]. It
// records the calls it gets, so tests can see how requests were batched.
type sumModel struct {
	mu    sync.Mutex
	calls []modelCall // guarded by mu

	// entered, when set, receives the rows of every call as it begins.
	entered chan int
	// gate, when set, holds every call until open closes it (or the call's
	// context ends).
	gate     chan struct{}
	openOnce sync.Once
}

// modelCall is one call to sumModel.
type modelCall struct {
	rows   int
	names  []string
	shapes [][]int
	valid  bool // every input's data matched its shape
}

// newSumModel returns a model; a gated one holds its calls until open.
func newSumModel(gated bool) *sumModel {
	m := &sumModel{entered: make(chan int, 1024)}
	if gated {
		m.gate = make(chan struct{})
	}
	return m
}

func (m *sumModel) open() {
	if m.gate != nil {
		m.openOnce.Do(func() { close(m.gate) })
	}
}

func (m *sumModel) Schema() ml.Schema {
	return ml.Schema{
		Inputs:  []ml.TensorSpec{{Name: "x", DataType: ml.FP64, Shape: []int{-1, -1}}},
		Outputs: []ml.TensorSpec{{Name: "y", DataType: ml.FP64, Shape: []int{-1}}},
	}
}

func (m *sumModel) Predict(ctx context.Context, inputs []ml.Tensor) ([]ml.Tensor, error) {
	call := modelCall{valid: true}
	for _, in := range inputs {
		call.names = append(call.names, in.Name)
		call.shapes = append(call.shapes, slices.Clone(in.Shape))
		call.valid = call.valid && in.Check() == nil && len(in.Shape) > 0
	}
	if len(inputs) > 0 && len(inputs[0].Shape) > 0 {
		call.rows = inputs[0].Shape[0]
	}
	m.mu.Lock()
	m.calls = append(m.calls, call)
	m.mu.Unlock()
	m.entered <- call.rows
	if m.gate != nil {
		select {
		case <-m.gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if !call.valid {
		return nil, fmt.Errorf("%w: inputs do not match their shapes", ml.ErrBadInput)
	}
	rows := call.rows
	sums := make([]float64, rows)
	for _, in := range inputs {
		per := len(in.Data) / max(rows, 1)
		for r := range rows {
			for _, v := range in.Data[r*per : (r+1)*per] {
				switch v {
				case badMarker:
					return nil, fmt.Errorf("%w: row %d holds the bad marker", ml.ErrBadInput, r)
				case panicMarker:
					panic("sumModel: the panic marker")
				}
				sums[r] += v
			}
		}
	}
	return []ml.Tensor{{Name: "y", Shape: []int{rows}, Data: sums}}, nil
}

func (m *sumModel) callList() []modelCall {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.calls)
}

// callRows returns the rows of every call, in order.
func (m *sumModel) callRows() []int {
	var rows []int
	for _, c := range m.callList() {
		rows = append(rows, c.rows)
	}
	return rows
}

// waitEntered waits until a call began, and returns its rows.
func (m *sumModel) waitEntered(t testing.TB) int {
	t.Helper()
	select {
	case n := <-m.entered:
		return n
	case <-time.After(5 * time.Second):
		t.Fatal("the model was not called within 5s")
		return 0
	}
}

// startBatcher starts a batcher over m, closed when the test ends (after m
// lets its calls go) unless the test closed it.
func startBatcher(t testing.TB, m *sumModel, workers, queue, maxBatch int, maxWait time.Duration) *batcher {
	t.Helper()
	b := newBatcher(m, workers, queue, maxBatch, maxWait)
	t.Cleanup(func() {
		m.open()
		select {
		case <-b.stop: // the test closed it
		default:
			b.close()
		}
	})
	return b
}

// matrix returns input "x" of shape [rows, cols]; row r of request id holds
// id*1000 + r*10 + c in column c, so every row of every request is distinct.
func matrix(id, rows, cols int) ml.Tensor {
	data := make([]float64, 0, rows*cols)
	for r := range rows {
		for c := range cols {
			data = append(data, float64(id*1000+r*10+c))
		}
	}
	return ml.Tensor{Name: "x", Shape: []int{rows, cols}, Data: data}
}

// rowSums is what sumModel answers for inputs: the sum of each row.
func rowSums(inputs []ml.Tensor) []float64 {
	rows := inputs[0].Shape[0]
	sums := make([]float64, rows)
	for _, in := range inputs {
		per := len(in.Data) / max(rows, 1)
		for r := range rows {
			for _, v := range in.Data[r*per : (r+1)*per] {
				sums[r] += v
			}
		}
	}
	return sums
}

func mustSubmit(t testing.TB, b *batcher, ctx context.Context, inputs ...ml.Tensor) *pending {
	t.Helper()
	p, err := b.submit(ctx, inputs)
	if err != nil {
		t.Fatalf("submit: %v", err)
	}
	return p
}

// answer waits for p's reply.
func answer(t testing.TB, p *pending) ([]ml.Tensor, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	v, err := p.wait(ctx)
	if err != nil {
		return nil, err
	}
	return v.(*PredictReply).Outputs, nil
}

// checkAnswer requires p's reply to be exactly the row sums of its inputs.
func checkAnswer(t testing.TB, p *pending) {
	t.Helper()
	out, err := answer(t, p)
	if err != nil {
		t.Fatalf("request of %d rows failed: %v", p.rows, err)
	}
	want := rowSums(p.inputs)
	if len(out) != 1 || out[0].Name != "y" || !slices.Equal(out[0].Shape, []int{len(want)}) || !slices.Equal(out[0].Data, want) {
		t.Fatalf("request of %d rows got %+v, want y = %v", p.rows, out, want)
	}
}

// blockWorker submits a one-row request and waits until the model holds it,
// so that what is submitted next queues up behind it.
func blockWorker(t testing.TB, b *batcher, m *sumModel) *pending {
	t.Helper()
	p := mustSubmit(t, b, context.Background(), matrix(0, 1, 2))
	if n := m.waitEntered(t); n != 1 {
		t.Fatalf("blocking call has %d rows, want 1", n)
	}
	return p
}

func TestBatcher_MaxBatchOneNeverMerges(t *testing.T) {
	m := newSumModel(true)
	b := startBatcher(t, m, 1, 64, 1, time.Second)
	first := blockWorker(t, b, m)
	var ps []*pending
	for i := range 6 {
		ps = append(ps, mustSubmit(t, b, context.Background(), matrix(i+1, 1, 2)))
	}
	m.open()
	checkAnswer(t, first)
	for _, p := range ps {
		checkAnswer(t, p)
	}
	if rows := m.callRows(); !slices.Equal(rows, []int{1, 1, 1, 1, 1, 1, 1}) {
		t.Fatalf("model calls had %v rows, want 7 calls of 1", rows)
	}
}

func TestBatcher_MergesUpToMaxBatch(t *testing.T) {
	const maxBatch = 4

	t.Run("queued requests", func(t *testing.T) {
		m := newSumModel(true)
		b := startBatcher(t, m, 1, 64, maxBatch, 0)
		first := blockWorker(t, b, m)
		var ps []*pending
		total := 1
		for i, rows := range []int{2, 1, 3, 2, 2, 1, 3, 1, 1} {
			ps = append(ps, mustSubmit(t, b, context.Background(), matrix(i+1, rows, 3)))
			total += rows
		}
		m.open()
		checkAnswer(t, first)
		for _, p := range ps {
			checkAnswer(t, p)
		}
		checkBatches(t, m.callRows(), maxBatch, total)
	})

	t.Run("concurrent submitters", func(t *testing.T) {
		m := newSumModel(true)
		b := startBatcher(t, m, 2, 64, maxBatch, 0)
		const n = 40
		ps := make(chan *pending, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				p, err := b.submit(context.Background(), []ml.Tensor{matrix(i, 1, 2)})
				if err != nil {
					t.Errorf("submit %d: %v", i, err)
					return
				}
				ps <- p
			})
		}
		wg.Wait()
		close(ps)
		m.open()
		for p := range ps {
			checkAnswer(t, p)
		}
		checkBatches(t, m.callRows(), maxBatch, n)
	})
}

// checkBatches requires every call to hold at most maxBatch rows, at least one
// to have merged requests, and every row to have been scored once.
func checkBatches(t testing.TB, rows []int, maxBatch, total int) {
	t.Helper()
	merged, sum := false, 0
	for _, n := range rows {
		if n > maxBatch {
			t.Fatalf("a model call had %d rows, more than max_batch %d (calls %v)", n, maxBatch, rows)
		}
		merged = merged || n > 1
		sum += n
	}
	if !merged {
		t.Fatalf("no model call merged requests (calls %v)", rows)
	}
	if sum != total {
		t.Fatalf("model calls scored %d rows (calls %v), want %d", sum, rows, total)
	}
}

func TestBatcher_MaxWait(t *testing.T) {
	tests := []struct {
		name     string
		maxBatch int
		maxWait  time.Duration
		requests int
		wantRows []int
	}{
		{name: "alone with max_wait", maxBatch: 8, maxWait: 50 * time.Millisecond, requests: 1, wantRows: []int{1}},
		{name: "alone without max_wait", maxBatch: 8, maxWait: 0, requests: 1, wantRows: []int{1}},
		// The wait ends as soon as the batch is full, long before max_wait.
		{name: "a full batch does not wait", maxBatch: 2, maxWait: time.Minute, requests: 2, wantRows: []int{2}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := newSumModel(false)
			b := startBatcher(t, m, 1, 64, tc.maxBatch, tc.maxWait)
			var ps []*pending
			for i := range tc.requests {
				ps = append(ps, mustSubmit(t, b, context.Background(), matrix(i, 1, 2)))
			}
			for _, p := range ps {
				checkAnswer(t, p)
			}
			if rows := m.callRows(); !slices.Equal(rows, tc.wantRows) {
				t.Fatalf("model calls had %v rows, want %v", rows, tc.wantRows)
			}
		})
	}
}

func TestBatcher_MergesOnlyCompatibleShapes(t *testing.T) {
	z := func(rows, cols int) ml.Tensor {
		t := matrix(7, rows, cols)
		t.Name = "z"
		return t
	}
	tests := []struct {
		name       string
		a, b       []ml.Tensor
		wantMerged bool
	}{
		{name: "same shape", a: []ml.Tensor{matrix(1, 1, 3)}, b: []ml.Tensor{matrix(2, 1, 3)}, wantMerged: true},
		{name: "different rows", a: []ml.Tensor{matrix(1, 2, 3)}, b: []ml.Tensor{matrix(2, 1, 3)}, wantMerged: true},
		{name: "different trailing dimension", a: []ml.Tensor{matrix(1, 1, 3)}, b: []ml.Tensor{matrix(2, 1, 2)}},
		{name: "different rank", a: []ml.Tensor{matrix(1, 1, 3)}, b: []ml.Tensor{{Name: "x", Shape: []int{1, 3, 1}, Data: []float64{1, 2, 3}}}},
		{name: "different input names", a: []ml.Tensor{matrix(1, 1, 3)}, b: []ml.Tensor{z(1, 3)}},
		{name: "different number of inputs", a: []ml.Tensor{matrix(1, 1, 3)}, b: []ml.Tensor{matrix(2, 1, 3), z(1, 3)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := newSumModel(true)
			b := startBatcher(t, m, 1, 64, 8, 0)
			first := blockWorker(t, b, m)
			pa := mustSubmit(t, b, context.Background(), tc.a...)
			pb := mustSubmit(t, b, context.Background(), tc.b...)
			m.open()
			for _, p := range []*pending{first, pa, pb} {
				checkAnswer(t, p)
			}
			calls := m.callList()[1:] // after the blocking call
			for _, c := range calls {
				if !c.valid {
					t.Fatalf("the model got inputs %v of shapes %v that do not match their data", c.names, c.shapes)
				}
			}
			want := 2
			if tc.wantMerged {
				want = 1
			}
			if len(calls) != want {
				t.Fatalf("the two requests took %d model calls (%+v), want %d", len(calls), calls, want)
			}
		})
	}
}

func TestBatcher_FailureInMergedBatchFailsOnlyItsRequest(t *testing.T) {
	tests := []struct {
		name     string
		marker   float64
		wantCode string
		wantMsg  string
	}{
		{name: "bad input", marker: badMarker, wantCode: structs.CodeInvalid, wantMsg: "bad marker"},
		{name: "panic", marker: panicMarker, wantCode: structs.CodeInternal, wantMsg: "ml: runtime error"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := newSumModel(true)
			b := startBatcher(t, m, 1, 64, 8, 0)
			first := blockWorker(t, b, m)
			var ps []*pending
			for i := range 4 {
				in := matrix(i+1, 1, 3)
				if i == 2 {
					in.Data[1] = tc.marker
				}
				ps = append(ps, mustSubmit(t, b, context.Background(), in))
			}
			m.open()
			checkAnswer(t, first)
			for i, p := range ps {
				if i != 2 {
					checkAnswer(t, p)
					continue
				}
				_, err := answer(t, p)
				if structs.ErrorCode(err) != tc.wantCode || !strings.Contains(fmt.Sprint(err), tc.wantMsg) {
					t.Fatalf("the request with the marker got %v (code %q), want code %q mentioning %q",
						err, structs.ErrorCode(err), tc.wantCode, tc.wantMsg)
				}
			}
			if rows := m.callRows(); !slices.Contains(rows[1:], 4) {
				t.Fatalf("model calls had %v rows; the four requests were never tried as one batch", rows)
			}
		})
	}
}

func TestBatcher_PanickingModelKeepsServing(t *testing.T) {
	m := newSumModel(false)
	b := startBatcher(t, m, 1, 64, 1, 0)

	bad := matrix(1, 1, 2)
	bad.Data[0] = panicMarker
	_, err := answer(t, mustSubmit(t, b, context.Background(), bad))
	if code := structs.ErrorCode(err); code != structs.CodeInternal || !strings.Contains(fmt.Sprint(err), ml.ErrRuntime.Error()) {
		t.Fatalf("a panicking model gave %v (code %q), want code %q wrapping %q", err, code, structs.CodeInternal, ml.ErrRuntime)
	}
	for i := range 3 {
		checkAnswer(t, mustSubmit(t, b, context.Background(), matrix(i+2, 2, 2)))
	}
}

func TestBatcher_FullQueueIsBusy(t *testing.T) {
	m := newSumModel(true)
	b := startBatcher(t, m, 1, 2, 1, 0)
	first := blockWorker(t, b, m)
	queued := []*pending{
		mustSubmit(t, b, context.Background(), matrix(1, 1, 2)),
		mustSubmit(t, b, context.Background(), matrix(2, 1, 2)),
	}
	_, err := b.submit(context.Background(), []ml.Tensor{matrix(3, 1, 2)})
	if !errors.Is(err, actors.ErrBusy) {
		t.Fatalf("submit to a full queue = %v, want actors.ErrBusy", err)
	}
	if code := structs.ErrorCode(codedError(err)); code != CodeBusy {
		t.Fatalf("a full queue has code %q, want %q", code, CodeBusy)
	}
	if n := b.inFlight.Load(); n != 3 {
		t.Fatalf("inFlight = %d with one request scoring and two queued, want 3", n)
	}
	m.open()
	checkAnswer(t, first)
	for _, p := range queued {
		checkAnswer(t, p)
	}
}

func TestBatcher_CancelledRequestIsNotScored(t *testing.T) {
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	marked := matrix(1, 1, 2)
	marked.Data[0] = badMarker // scoring it would fail with bad input, not unavailable

	t.Run("alone", func(t *testing.T) {
		m := newSumModel(false)
		b := startBatcher(t, m, 1, 64, 1, 0)
		_, err := answer(t, mustSubmit(t, b, cancelled, marked))
		if code := structs.ErrorCode(err); code != structs.CodeUnavailable {
			t.Fatalf("a cancelled request got %v (code %q), want code %q", err, code, structs.CodeUnavailable)
		}
		if calls := m.callRows(); len(calls) != 0 {
			t.Fatalf("the model was called %v for a cancelled request", calls)
		}
	})
	t.Run("in a batch", func(t *testing.T) {
		m := newSumModel(true)
		b := startBatcher(t, m, 1, 64, 8, 0)
		first := blockWorker(t, b, m)
		live1 := mustSubmit(t, b, context.Background(), matrix(2, 1, 2))
		dead := mustSubmit(t, b, cancelled, marked)
		live2 := mustSubmit(t, b, context.Background(), matrix(3, 1, 2))
		m.open()
		checkAnswer(t, first)
		checkAnswer(t, live1)
		checkAnswer(t, live2)
		// wait(ctx) would answer the cancelled ctx itself; read the batcher's answer.
		_, err := answer(t, dead)
		if code := structs.ErrorCode(err); code != structs.CodeUnavailable {
			t.Fatalf("a cancelled request got %v (code %q), want code %q", err, code, structs.CodeUnavailable)
		}
		if rows := m.callRows(); !slices.Equal(rows, []int{1, 2}) {
			t.Fatalf("model calls had %v rows, want [1 2]: the cancelled request is left out", rows)
		}
	})
}

func TestBatcher_CloseAnswersQueuedWithErrStopped(t *testing.T) {
	m := newSumModel(true)
	b := startBatcher(t, m, 1, 64, 1, 0)
	first := blockWorker(t, b, m)
	var queued []*pending
	for i := range 3 {
		queued = append(queued, mustSubmit(t, b, context.Background(), matrix(i+1, 1, 2)))
	}

	closed := make(chan struct{})
	go func() {
		b.close()
		close(closed)
	}()
	testutil.Until(t, 5*time.Second, "", func() bool {
		select {
		case <-b.stop:
			return true
		default:
			return false
		}
	})
	select {
	case <-closed:
		t.Fatal("close returned while a worker was still scoring")
	default:
	}
	m.open()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("close did not return once the worker finished")
	}

	checkAnswer(t, first) // what a worker held is finished
	for i, p := range queued {
		select {
		case err := <-p.err:
			if !errors.Is(err, actors.ErrStopped) {
				t.Fatalf("queued request %d got %v, want actors.ErrStopped", i, err)
			}
			if code := structs.ErrorCode(codedError(err)); code != structs.CodeUnavailable {
				t.Fatalf("a stopped replica's error has code %q, want %q (another replica may answer)", code, structs.CodeUnavailable)
			}
		case r := <-p.done:
			t.Fatalf("queued request %d was scored (%v) after close", i, r.Outputs)
		default:
			t.Fatalf("queued request %d has no answer after close", i)
		}
	}
	if rows := m.callRows(); len(rows) != 1 {
		t.Fatalf("model calls %v, want only the one in progress at close", rows)
	}
}

func TestBatcher_Counters(t *testing.T) {
	m := newSumModel(true)
	b := startBatcher(t, m, 1, 64, 4, 0)
	first := blockWorker(t, b, m)
	var ps []*pending
	for i := range 5 {
		ps = append(ps, mustSubmit(t, b, context.Background(), matrix(i+1, 1, 2)))
	}
	if in, served := b.inFlight.Load(), b.served.Load(); in != 6 || served != 0 {
		t.Fatalf("while the model holds a call: inFlight %d, served %d; want 6, 0", in, served)
	}
	m.open()
	checkAnswer(t, first)
	for _, p := range ps {
		checkAnswer(t, p)
	}
	// The counters move just after the answers go out.
	testutil.Until(t, 5*time.Second, "", func() bool { return b.served.Load() == 6 })
	if in := b.inFlight.Load(); in != 0 {
		t.Fatalf("inFlight = %d after every request was answered, want 0", in)
	}
}

func TestCodedError(t *testing.T) {
	coded := structs.Errorf(structs.CodeNotFound, "no such thing")
	tests := []struct {
		name string
		err  error
		want string // "" for a nil result
	}{
		{name: "nil", err: nil},
		{name: "already coded", err: fmt.Errorf("wrapped: %w", coded), want: structs.CodeNotFound},
		{name: "bad input", err: fmt.Errorf("x: %w", ml.ErrBadInput), want: structs.CodeInvalid},
		{name: "deadline", err: context.DeadlineExceeded, want: structs.CodeUnavailable},
		{name: "cancelled", err: context.Canceled, want: structs.CodeUnavailable},
		{name: "stopped replica", err: fmt.Errorf("x: %w", actors.ErrStopped), want: structs.CodeUnavailable},
		{name: "busy", err: fmt.Errorf("x: %w", actors.ErrBusy), want: CodeBusy},
		{name: "runtime", err: fmt.Errorf("x: %w", ml.ErrRuntime), want: structs.CodeInternal},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := codedError(tc.err)
			if tc.want == "" {
				if got != nil {
					t.Fatalf("codedError(nil) = %v", got)
				}
				return
			}
			var ce *structs.CodedError
			if !errors.As(got, &ce) || ce.Code != tc.want {
				t.Fatalf("codedError(%v) = %v, want code %q", tc.err, got, tc.want)
			}
		})
	}
}
