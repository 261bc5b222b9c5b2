package structs

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// assertCoded checks err against a wanted code ("" for no error) and a part of
// its message.
func assertCoded(t *testing.T, err error, wantCode, wantMsg string) {
	t.Helper()
	if wantCode == "" {
		if err != nil {
			t.Fatalf("error %v, want none", err)
		}
		return
	}
	if err == nil {
		t.Fatalf("no error, want code %q", wantCode)
	}
	if got := ErrorCode(err); got != wantCode {
		t.Fatalf("error %v has code %q, want %q", err, got, wantCode)
	}
	if !strings.Contains(err.Error(), wantMsg) {
		t.Fatalf("error %q does not mention %q", err, wantMsg)
	}
}

func splits(pairs ...int) []TrafficSplit {
	var out []TrafficSplit
	for i := 0; i+1 < len(pairs); i += 2 {
		out = append(out, TrafficSplit{Version: uint64(pairs[i]), Weight: pairs[i+1]})
	}
	return out
}

func TestTraffic_Validate(t *testing.T) {
	many := func(n int) []TrafficSplit {
		var out []TrafficSplit
		for i := 1; i <= n; i++ {
			out = append(out, TrafficSplit{Version: uint64(i), Weight: 1})
		}
		return out
	}
	tests := []struct {
		name     string
		traffic  Traffic
		wantCode string
		wantMsg  string
	}{
		{name: "one version", traffic: Traffic{Versions: splits(1, 100)}},
		{name: "split with shadow", traffic: Traffic{Versions: splits(1, 90, 2, 10), Shadow: 3}},
		{name: "a zero weight beside a positive one", traffic: Traffic{Versions: splits(1, 0, 2, 1)}},
		{name: "weights at the bounds", traffic: Traffic{Versions: splits(1, 1000, 2, 0)}},
		{name: "as many versions as allowed", traffic: Traffic{Versions: many(MaxTrafficVersions)}},
		{name: "no versions", traffic: Traffic{}, wantCode: CodeInvalid, wantMsg: "versions is empty"},
		{name: "only a shadow", traffic: Traffic{Shadow: 1}, wantCode: CodeInvalid, wantMsg: "versions is empty"},
		{name: "too many versions", traffic: Traffic{Versions: many(MaxTrafficVersions + 1)}, wantCode: CodeInvalid, wantMsg: "more than 16"},
		{name: "version 0", traffic: Traffic{Versions: splits(1, 1, 0, 1)}, wantCode: CodeInvalid, wantMsg: "versions[1].version is required"},
		{name: "duplicate version", traffic: Traffic{Versions: splits(1, 1, 2, 1, 1, 1)}, wantCode: CodeInvalid, wantMsg: "versions[2].version 1 is listed twice"},
		{name: "negative weight", traffic: Traffic{Versions: splits(1, 10, 2, -1)}, wantCode: CodeInvalid, wantMsg: "versions[1].weight -1"},
		{name: "weight above 1000", traffic: Traffic{Versions: splits(1, 1001)}, wantCode: CodeInvalid, wantMsg: "versions[0].weight 1001"},
		{name: "weights sum to 0", traffic: Traffic{Versions: splits(1, 0, 2, 0)}, wantCode: CodeInvalid, wantMsg: "weights add up to 0"},
		{name: "shadow also weighted", traffic: Traffic{Versions: splits(1, 50, 2, 50), Shadow: 2}, wantCode: CodeInvalid, wantMsg: "shadow version 2"},
		{name: "shadow weighted at 0", traffic: Traffic{Versions: splits(1, 50, 2, 0), Shadow: 2}, wantCode: CodeInvalid, wantMsg: "shadow version 2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assertCoded(t, tt.traffic.Validate(), tt.wantCode, tt.wantMsg)
		})
	}
}

func TestTraffic_ServedVersions(t *testing.T) {
	tests := []struct {
		name    string
		traffic Traffic
		want    []uint64
	}{
		{name: "empty", traffic: Traffic{}, want: []uint64{}},
		{name: "weighted in order", traffic: Traffic{Versions: splits(3, 1, 1, 1, 2, 0)}, want: []uint64{3, 1, 2}},
		{name: "shadow last", traffic: Traffic{Versions: splits(2, 1), Shadow: 5}, want: []uint64{2, 5}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.traffic.ServedVersions(); !slices.Equal(got, tt.want) {
				t.Fatalf("ServedVersions() = %v, want %v", got, tt.want)
			}
		})
	}
}

func validDeployment() Deployment {
	return Deployment{
		Name: "iris", Traffic: Traffic{Versions: splits(1, 90, 2, 10), Shadow: 3}, Replicas: 2,
		Batching:  Batching{MaxBatch: 16, MaxWaitMS: 5},
		Resources: ReplicaResources{MemoryMB: 512, GPUs: 1},
	}
}

func TestDeployment_Validate(t *testing.T) {
	tests := []struct {
		name     string
		change   func(d *Deployment)
		wantCode string
		wantMsg  string
	}{
		{name: "valid", change: func(*Deployment) {}},
		{name: "limits", change: func(d *Deployment) {
			d.Replicas, d.Batching, d.Resources = MaxReplicas, Batching{MaxBatch: 4096, MaxWaitMS: 1000}, ReplicaResources{GPUs: 64}
		}},
		{name: "no batching", change: func(d *Deployment) { d.Batching = Batching{} }},
		{name: "one replica", change: func(d *Deployment) { d.Replicas = 1 }},
		{name: "history is not checked", change: func(d *Deployment) { d.History = []Traffic{{}} }},
		{name: "empty name", change: func(d *Deployment) { d.Name = "" }, wantCode: CodeInvalid, wantMsg: "name is required"},
		{name: "invalid name", change: func(d *Deployment) { d.Name = "Iris/1" }, wantCode: CodeInvalid, wantMsg: `name "Iris/1"`},
		{name: "invalid traffic", change: func(d *Deployment) { d.Traffic.Versions = nil }, wantCode: CodeInvalid, wantMsg: "versions is empty"},
		{name: "shadow also weighted", change: func(d *Deployment) { d.Traffic.Shadow = 1 }, wantCode: CodeInvalid, wantMsg: "shadow version 1"},
		{name: "no replicas", change: func(d *Deployment) { d.Replicas = 0 }, wantCode: CodeInvalid, wantMsg: "replicas 0"},
		{name: "negative replicas", change: func(d *Deployment) { d.Replicas = -1 }, wantCode: CodeInvalid, wantMsg: "replicas -1"},
		{name: "too many replicas", change: func(d *Deployment) { d.Replicas = MaxReplicas + 1 }, wantCode: CodeInvalid, wantMsg: "replicas 65"},
		{name: "negative max batch", change: func(d *Deployment) { d.Batching.MaxBatch = -1 }, wantCode: CodeInvalid, wantMsg: "batching.max_batch"},
		{name: "max batch too large", change: func(d *Deployment) { d.Batching.MaxBatch = 4097 }, wantCode: CodeInvalid, wantMsg: "batching.max_batch"},
		{name: "negative max wait", change: func(d *Deployment) { d.Batching.MaxWaitMS = -1 }, wantCode: CodeInvalid, wantMsg: "batching.max_wait_ms"},
		{name: "max wait too long", change: func(d *Deployment) { d.Batching.MaxWaitMS = 1001 }, wantCode: CodeInvalid, wantMsg: "batching.max_wait_ms"},
		{name: "negative timeout", change: func(d *Deployment) { d.TimeoutMS = -1 }, wantCode: CodeInvalid, wantMsg: "timeout_ms"},
		{name: "timeout over ten minutes", change: func(d *Deployment) { d.TimeoutMS = MaxPredictTimeoutMS + 1 }, wantCode: CodeInvalid, wantMsg: "timeout_ms"},
		{name: "timeout of ten minutes", change: func(d *Deployment) { d.TimeoutMS = MaxPredictTimeoutMS }},
		{name: "negative memory", change: func(d *Deployment) { d.Resources.MemoryMB = -1 }, wantCode: CodeInvalid, wantMsg: "resources.memory_mb"},
		{name: "negative gpus", change: func(d *Deployment) { d.Resources.GPUs = -1 }, wantCode: CodeInvalid, wantMsg: "resources.gpus"},
		{name: "too many gpus", change: func(d *Deployment) { d.Resources.GPUs = 65 }, wantCode: CodeInvalid, wantMsg: "resources.gpus"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := validDeployment()
			tt.change(&d)
			assertCoded(t, d.Validate(), tt.wantCode, tt.wantMsg)
		})
	}
}

const testDigest = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"

func validVersion() ModelVersion {
	return ModelVersion{
		Model: "iris", Format: "onnx", Digest: testDigest, Size: 1 << 20,
		Schema: Schema{
			Inputs:  []TensorSpec{{Name: "x", DataType: "FP32", Shape: []int{-1, 4}}},
			Outputs: []TensorSpec{{Name: "y", DataType: "INT64", Shape: []int{-1}}},
		},
		Metadata: map[string]string{"framework": "sklearn"},
		Holders:  []string{"node-1"},
	}
}

func TestModelVersion_Validate(t *testing.T) {
	process := func(v *ModelVersion) {
		v.Format, v.Digest, v.Holders = FormatProcess, "", nil
		v.Process = &ProcessSpec{Command: []string{"./serve", "--port", "$KILN_PORT"}, Env: map[string]string{"MODE": "fast"}}
	}
	tensors := func(n int) []TensorSpec { return make([]TensorSpec, n) }
	manyMeta := func(n int) map[string]string {
		m := make(map[string]string, n)
		for i := range n {
			m[fmt.Sprintf("k%03d", i)] = "v"
		}
		return m
	}
	tests := []struct {
		name     string
		change   func(v *ModelVersion)
		wantCode string
		wantMsg  string
	}{
		{name: "valid", change: func(*ModelVersion) {}},
		{name: "process without artifact", change: process},
		{name: "process with artifact", change: func(v *ModelVersion) {
			process(v)
			v.Digest, v.Holders = testDigest, []string{"node-2"}
		}},
		{name: "empty schema", change: func(v *ModelVersion) { v.Schema = Schema{} }},
		{name: "schema at the limits", change: func(v *ModelVersion) {
			v.Schema = Schema{Inputs: tensors(MaxSchemaTensors), Outputs: tensors(MaxSchemaTensors), FeatureNames: make([]string, MaxFeatureNames)}
		}},
		{name: "metadata at the limit", change: func(v *ModelVersion) { v.Metadata = manyMeta(MaxMetadata) }},
		{name: "invalid model name", change: func(v *ModelVersion) { v.Model = "Iris" }, wantCode: CodeInvalid, wantMsg: `model "Iris"`},
		{name: "no model name", change: func(v *ModelVersion) { v.Model = "" }, wantCode: CodeInvalid, wantMsg: "model is required"},
		{name: "unknown format", change: func(v *ModelVersion) { v.Format = "pickle" }, wantCode: CodeInvalid, wantMsg: `format "pickle"`},
		{name: "format in capitals", change: func(v *ModelVersion) { v.Format = "ONNX" }, wantCode: CodeInvalid, wantMsg: "format"},
		{name: "short digest", change: func(v *ModelVersion) { v.Digest = testDigest[:63] }, wantCode: CodeInvalid, wantMsg: "digest"},
		{name: "uppercase digest", change: func(v *ModelVersion) { v.Digest = strings.ToUpper(testDigest) }, wantCode: CodeInvalid, wantMsg: "digest"},
		{name: "no digest", change: func(v *ModelVersion) { v.Digest = "" }, wantCode: CodeInvalid, wantMsg: "digest"},
		{name: "no holders", change: func(v *ModelVersion) { v.Holders = nil }, wantCode: CodeInvalid, wantMsg: "holders is empty"},
		{name: "negative size", change: func(v *ModelVersion) { v.Size = -1 }, wantCode: CodeInvalid, wantMsg: "size is negative"},
		{name: "process format without spec", change: func(v *ModelVersion) {
			process(v)
			v.Process = nil
		}, wantCode: CodeInvalid, wantMsg: "process is required"},
		{name: "process spec with another format", change: func(v *ModelVersion) {
			v.Process = &ProcessSpec{Command: []string{"serve"}}
		}, wantCode: CodeInvalid, wantMsg: "process is only allowed"},
		{name: "process without command", change: func(v *ModelVersion) {
			process(v)
			v.Process.Command = nil
		}, wantCode: CodeInvalid, wantMsg: "process.command is required"},
		{name: "process with an empty program", change: func(v *ModelVersion) {
			process(v)
			v.Process.Command = []string{"", "x"}
		}, wantCode: CodeInvalid, wantMsg: "process.command is required"},
		{name: "process with too many arguments", change: func(v *ModelVersion) {
			process(v)
			v.Process.Command = make([]string, MaxProcessArgs+1)
			v.Process.Command[0] = "serve"
		}, wantCode: CodeInvalid, wantMsg: "process.command has more than"},
		{name: "process env too large", change: func(v *ModelVersion) {
			process(v)
			v.Process.Env = manyMeta(MaxMetadata + 1)
		}, wantCode: CodeInvalid, wantMsg: "process.env has more than"},
		{name: "process env key with =", change: func(v *ModelVersion) {
			process(v)
			v.Process.Env = map[string]string{"A=B": "1"}
		}, wantCode: CodeInvalid, wantMsg: "process.env key"},
		{name: "process env empty key", change: func(v *ModelVersion) {
			process(v)
			v.Process.Env = map[string]string{"": "1"}
		}, wantCode: CodeInvalid, wantMsg: "process.env key"},
		{name: "process digest without holders", change: func(v *ModelVersion) {
			process(v)
			v.Digest = testDigest
		}, wantCode: CodeInvalid, wantMsg: "holders is empty"},
		{name: "process with a bad digest", change: func(v *ModelVersion) {
			process(v)
			v.Digest, v.Holders = "xyz", []string{"node-1"}
		}, wantCode: CodeInvalid, wantMsg: "digest"},
		{name: "too many inputs", change: func(v *ModelVersion) { v.Schema.Inputs = tensors(MaxSchemaTensors + 1) }, wantCode: CodeInvalid, wantMsg: "schema"},
		{name: "too many outputs", change: func(v *ModelVersion) { v.Schema.Outputs = tensors(MaxSchemaTensors + 1) }, wantCode: CodeInvalid, wantMsg: "schema"},
		{name: "too many feature names", change: func(v *ModelVersion) {
			v.Schema.FeatureNames = make([]string, MaxFeatureNames+1)
		}, wantCode: CodeInvalid, wantMsg: "schema.feature_names"},
		{name: "output with too many dimensions", change: func(v *ModelVersion) {
			v.Schema.Outputs[0].Shape = make([]int, 9)
		}, wantCode: CodeInvalid, wantMsg: `("y")`},
		{name: "too much metadata", change: func(v *ModelVersion) { v.Metadata = manyMeta(MaxMetadata + 1) }, wantCode: CodeInvalid, wantMsg: "metadata has 65 keys"},
		{name: "empty metadata key", change: func(v *ModelVersion) { v.Metadata = map[string]string{"": "x"} }, wantCode: CodeInvalid, wantMsg: "metadata key"},
		{name: "long metadata key", change: func(v *ModelVersion) {
			v.Metadata = map[string]string{strings.Repeat("k", MaxTagKeyLen+1): "x"}
		}, wantCode: CodeInvalid, wantMsg: "metadata key"},
		{name: "long metadata value", change: func(v *ModelVersion) {
			v.Metadata = map[string]string{"k": strings.Repeat("v", MaxTagValueLen+1)}
		}, wantCode: CodeInvalid, wantMsg: "metadata key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := validVersion()
			tt.change(&v)
			assertCoded(t, v.Validate(), tt.wantCode, tt.wantMsg)
		})
	}
}

func TestModelVersion_ValidateEveryFormat(t *testing.T) {
	for _, f := range Formats {
		t.Run(f, func(t *testing.T) {
			v := validVersion()
			v.Format = f
			if f == FormatProcess {
				v.Process = &ProcessSpec{Command: []string{"serve"}}
			}
			if err := v.Validate(); err != nil {
				t.Fatalf("Validate() = %v for format %q", err, f)
			}
		})
	}
}

func TestValidateDigest(t *testing.T) {
	tests := []struct {
		digest  string
		wantErr bool
	}{
		{digest: testDigest},
		{digest: strings.Repeat("0", 64)},
		{digest: "", wantErr: true},
		{digest: testDigest + "0", wantErr: true},
		{digest: "sha256:" + testDigest[7:], wantErr: true},
		{digest: strings.Repeat("g", 64), wantErr: true},
		{digest: testDigest[:63] + "\n", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%.12q", tt.digest), func(t *testing.T) {
			err := ValidateDigest("artifact.digest", tt.digest)
			if (err != nil) != tt.wantErr {
				t.Fatalf("ValidateDigest(%q) = %v, want error %v", tt.digest, err, tt.wantErr)
			}
			if err != nil && (ErrorCode(err) != CodeInvalid || !strings.Contains(err.Error(), "artifact.digest")) {
				t.Fatalf("error %v, want invalid_argument naming the field", err)
			}
		})
	}
}

func TestMessageType_Serving(t *testing.T) {
	tests := []struct {
		typ  MessageType
		want string
	}{
		{VersionCreateType, "version_create"},
		{VersionDeleteType, "version_delete"},
		{AliasSetType, "alias_set"},
		{DeploymentPutType, "deployment_put"},
		{DeploymentRollbackType, "deployment_rollback"},
		{DeploymentDeleteType, "deployment_delete"},
		{AllocPlanType, "alloc_plan"},
		{AllocStatusType, "alloc_status"},
	}
	for i, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			if uint8(tt.typ) != uint8(7+i) {
				t.Fatalf("%s = %d, want %d (types are append-only)", tt.want, tt.typ, 7+i)
			}
			if got := tt.typ.String(); got != tt.want {
				t.Fatalf("String() = %q, want %q", got, tt.want)
			}
			if got := (tt.typ | IgnoreUnknownFlag).String(); got != tt.want {
				t.Fatalf("String() with the ignore flag = %q, want %q", got, tt.want)
			}
			if !tt.typ.Known() {
				t.Fatalf("%s is not Known()", tt.want)
			}
		})
	}
	if MessageType(22).Known() || MessageType(22).String() != "message_type(22)" {
		t.Fatalf("type 22 is known (%q) before anything claims it", MessageType(22))
	}
}

const crockford = "0123456789abcdefghjkmnpqrstvwxyz"

// idMillis decodes the timestamp in the first 10 characters of an ID
// (3 + 9*5 = 48 bits).
func idMillis(t *testing.T, id string) int64 {
	t.Helper()
	var ms int64
	for _, c := range id[:10] {
		i := strings.IndexRune(crockford, c)
		if i < 0 {
			t.Fatalf("ID %q has %q, not in the alphabet", id, c)
		}
		ms = ms<<5 | int64(i)
	}
	return ms
}

func TestNewID_Format(t *testing.T) {
	times := []time.Time{
		time.Unix(0, 0),
		time.Date(2025, 1, 2, 3, 4, 5, 678_000_000, time.UTC),
		time.Date(2025, 1, 2, 3, 4, 5, 678_000_000, time.FixedZone("x", 5*3600)),
		time.Date(9999, 12, 31, 23, 59, 59, 999_000_000, time.UTC),
	}
	for _, now := range times {
		t.Run(now.String(), func(t *testing.T) {
			id := NewID(now)
			if len(id) != 26 {
				t.Fatalf("NewID = %q, %d characters, want 26", id, len(id))
			}
			for _, c := range id {
				if !strings.ContainsRune(crockford, c) {
					t.Fatalf("NewID = %q holds %q, not in the Crockford alphabet", id, c)
				}
			}
			if id[0] > '7' {
				t.Fatalf("NewID = %q: the first character carries only 3 bits", id)
			}
			if got := idMillis(t, id); got != now.UnixMilli() {
				t.Fatalf("NewID = %q encodes %d ms, want %d", id, got, now.UnixMilli())
			}
		})
	}
}

func TestNewID_SortsByTime(t *testing.T) {
	base := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name  string
		start time.Time
		gap   time.Duration
	}{
		{name: "2 ms apart", start: base, gap: 2 * time.Millisecond},
		{name: "across a character boundary", start: base.Add(31 * time.Millisecond), gap: 2 * time.Millisecond},
		{name: "a day apart", start: base, gap: 24 * time.Hour},
		{name: "months apart", start: time.Unix(1, 0), gap: 30 * 24 * time.Hour},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Many pairs, so that the random part cannot make the order right by luck.
			for i := range 200 {
				now := tt.start.Add(time.Duration(i) * tt.gap)
				a, b := NewID(now), NewID(now.Add(tt.gap))
				if a >= b {
					t.Fatalf("NewID(%v) = %q does not sort before NewID(%v) = %q", now, a, now.Add(tt.gap), b)
				}
			}
		})
	}
}

func TestNewID_Unique(t *testing.T) {
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	seen := make(map[string]bool, 10_000)
	for i := range 10_000 {
		id := NewID(now) // one millisecond: only the random part differs
		if seen[id] {
			t.Fatalf("ID %q repeated after %d IDs", id, i)
		}
		seen[id] = true
	}
}
