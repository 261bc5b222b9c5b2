package main

import (
	"bytes"
	"io"
	"strings"
	"testing"
	"time"
)

const linearIris = "../../ml/testdata/linear/iris.json"

// TestModelsPush_CreatesTheModel: push makes a model that does not exist,
// -no-create refuses to, and an existing model is pushed to as it is.
func TestModelsPush_CreatesTheModel(t *testing.T) {
	kiln := kilnAt(t, testAgent(t))
	code, out, errOut := kiln("models", "push", "-no-create", "iris", linearIris)
	if code != 1 || !strings.Contains(errOut, "model iris does not exist, and -no-create was given") {
		t.Fatalf("push -no-create to a missing model: %d %q %q", code, out, errOut)
	}
	if code, _, errOut := kiln("models", "get", "iris"); code != 1 || !strings.Contains(errOut, "not found") {
		t.Fatalf("-no-create created the model: %d %q", code, errOut)
	}
	code, out, errOut = kiln("models", "push", "iris", linearIris)
	if code != 0 || !strings.Contains(out, "Created model iris") || !strings.Contains(out, "iris   1 ") {
		t.Fatalf("push to a missing model: %d %q %q", code, out, errOut)
	}
	code, out, errOut = kiln("models", "push", "-format", "json", "iris", linearIris)
	if code != 0 || strings.Contains(out+errOut, "Created") || !strings.Contains(out, `"version": 2`) {
		t.Fatalf("push to an existing model: %d %q %q", code, out, errOut)
	}
}

// TestModelsPush_ProgressFollowsTheNode: over progressMinSize, with a
// terminal for the bar, push uploads asynchronously and draws what the
// node reports it received, then the version.
func TestModelsPush_ProgressFollowsTheNode(t *testing.T) {
	var bar bytes.Buffer
	oldOut, oldMin, oldPoll := progressOutput, progressMinSize, uploadPoll
	progressOutput = func() (io.Writer, bool) { return &bar, true }
	progressMinSize, uploadPoll = 100, 10*time.Millisecond
	defer func() { progressOutput, progressMinSize, uploadPoll = oldOut, oldMin, oldPoll }()

	kiln := kilnAt(t, testAgent(t))
	code, out, errOut := kiln("models", "push", "iris", linearIris)
	if code != 0 || !strings.Contains(out, "iris   1 ") {
		t.Fatalf("push: %d %q %q", code, out, errOut)
	}
	// The last line the bar drew is the node's: all 701 bytes, done, and
	// one copy (a single node).
	if !strings.Contains(bar.String(), "iris.json (done, 1 copies) 100.0% 0.0/0.0 MB") {
		t.Fatalf("progress %q", bar.String())
	}
	// A file the node will not load fails the upload with its reason.
	code, _, errOut = kiln("models", "push", "-model-format", "lightgbm", "iris", linearIris)
	if code != 1 || !strings.Contains(errOut, "lightgbm") {
		t.Fatalf("push of a bad file: %d %q", code, errOut)
	}
}
