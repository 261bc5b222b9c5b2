package monitor

import (
	"strings"
	"testing"
	"time"

	"github.com/kilnml/kiln/raftfsm/structs"
)

func TestCompile_RefusesUnknownNames(t *testing.T) {
	for _, tc := range []struct{ cond, want string }{
		{"drift.share_drifted > 0.25", ""},
		{`drift.features["x"].p_value < 0.01`, ""},
		{"performance.accuracy < 0.9 && performance.labeled > 100", ""},
		{"errors.rate > 0.1 || canary.errors.rate > 0.05", ""},
		{"latency.p99_ms > 250", ""},
		{"performance.acuracy < 0.9", "does not compile"},
		{"drift.share > 0.25", "does not compile"},
		{`drift.features["y"].drift`, `no feature "y"`},
		{"errors.rate", "does not compile"},
	} {
		_, err := Compile(tc.cond, []string{"x"})
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.cond, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: error %v, want one containing %q", tc.cond, err, tc.want)
		}
	}
}

func TestCondition_EvalValue(t *testing.T) {
	c, err := Compile("drift.share_drifted > 0.25", nil)
	if err != nil {
		t.Fatal(err)
	}
	holds, v, err := c.Eval(Env{Drift: Drift{ShareDrifted: 0.5}})
	if err != nil || !holds || v != 0.5 {
		t.Fatalf("Eval = %v, %v, %v; want true, 0.5", holds, v, err)
	}
	p, _ := Compile("performance.accuracy < 0.5", nil)
	if !p.UsesPerformance || c.UsesPerformance {
		t.Error("UsesPerformance is wrong")
	}
}

func TestStep(t *testing.T) {
	t0 := time.Unix(1000, 0)
	hold := time.Minute
	for _, tc := range []struct {
		state string
		since time.Time
		holds bool
		now   time.Time
		hold  time.Duration
		want  string
	}{
		{structs.AlertInactive, t0, false, t0, hold, structs.AlertInactive},
		{structs.AlertInactive, t0, true, t0, hold, structs.AlertPending},
		{structs.AlertInactive, t0, true, t0, 0, structs.AlertFiring},
		{structs.AlertPending, t0, true, t0.Add(30 * time.Second), hold, structs.AlertPending},
		{structs.AlertPending, t0, true, t0.Add(hold), hold, structs.AlertFiring},
		{structs.AlertPending, t0, false, t0.Add(hold), hold, structs.AlertInactive},
		{structs.AlertFiring, t0, true, t0.Add(time.Hour), hold, structs.AlertFiring},
		{structs.AlertFiring, t0, false, t0.Add(time.Hour), hold, structs.AlertResolved},
		{structs.AlertResolved, t0, true, t0, hold, structs.AlertPending},
		{structs.AlertResolved, t0, false, t0, hold, structs.AlertResolved},
	} {
		if got := Step(tc.state, tc.since, tc.holds, tc.now, tc.hold); got != tc.want {
			t.Errorf("Step(%s, holds %v, after %s, for %s) = %s, want %s", tc.state, tc.holds, tc.now.Sub(tc.since), tc.hold, got, tc.want)
		}
	}
}

func TestBackoff(t *testing.T) {
	want := []time.Duration{time.Second, time.Second, 2 * time.Second, 4 * time.Second}
	for n, w := range want {
		if got := Backoff(n); got != w {
			t.Errorf("Backoff(%d) = %s, want %s", n, got, w)
		}
	}
	if got := Backoff(100); got != 5*time.Minute {
		t.Errorf("Backoff(100) = %s, want 5m", got)
	}
}
