package node

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"testing"
)

// The Open Inference Protocol v2 over REST, held to its published
// specification and to Triton's binary tensor data extension: every
// endpoint, each datatype, parameters at each level, binary tensors in and
// out, and the errors. The model is the linear iris classifier: input
// "input" [-1, 4], output "output" [-1, 3] of FP64.

// v2Response is an infer answer, with its binary outputs read as float64s.
type v2Response struct {
	status  int
	header  http.Header
	body    map[string]any
	raw     []byte
	outputs map[string][]float64 // every output's values, JSON or binary
}

// inferRaw posts body to the model's infer endpoint, with the binary
// header when headerLen >= 0, and reads the answer as a client does.
func inferRaw(t *testing.T, a *Agent, path string, body []byte, headerLen int) v2Response {
	t.Helper()
	req, _ := http.NewRequest("POST", "http://"+a.HTTPAddr()+path, bytes.NewReader(body))
	if headerLen >= 0 {
		req.Header.Set("Inference-Header-Content-Length", strconv.Itoa(headerLen))
		req.Header.Set("Content-Type", "application/octet-stream")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	out := v2Response{status: resp.StatusCode, header: resp.Header, raw: raw, outputs: map[string][]float64{}}
	head := raw
	if h := resp.Header.Get("Inference-Header-Content-Length"); h != "" {
		n, err := strconv.Atoi(h)
		if err != nil || n > len(raw) {
			t.Fatalf("answer's header length %q, body %d bytes", h, len(raw))
		}
		head = raw[:n]
	}
	if err := json.Unmarshal(head, &out.body); err != nil {
		t.Fatalf("answer %d is not JSON: %s", resp.StatusCode, raw)
	}
	tail := raw[len(head):]
	outs, _ := out.body["outputs"].([]any)
	for _, o := range outs {
		o := o.(map[string]any)
		name := o["name"].(string)
		if data, ok := o["data"].([]any); ok {
			for _, v := range data {
				out.outputs[name] = append(out.outputs[name], v.(float64))
			}
			continue
		}
		size := int(o["parameters"].(map[string]any)["binary_data_size"].(float64))
		if o["datatype"] != "FP64" || size > len(tail) {
			t.Fatalf("binary output %v with %d bytes left", o, len(tail))
		}
		for k := 0; k < size; k += 8 {
			out.outputs[name] = append(out.outputs[name], math.Float64frombits(binary.LittleEndian.Uint64(tail[k:])))
		}
		tail = tail[size:]
	}
	if len(tail) != 0 {
		t.Fatalf("%d bytes after the last binary output", len(tail))
	}
	return out
}

func inferJSON(t *testing.T, a *Agent, path, body string) v2Response {
	t.Helper()
	return inferRaw(t, a, path, []byte(body), -1)
}

// binaryBody is a request's JSON followed by the inputs' raw bytes.
func binaryBody(head string, raws ...[]byte) ([]byte, int) {
	b := []byte(head)
	for _, r := range raws {
		b = append(b, r...)
	}
	return b, len(head)
}

func le(datatype string, vals ...float64) []byte {
	var b []byte
	for _, v := range vals {
		switch datatype {
		case "FP32":
			b = binary.LittleEndian.AppendUint32(b, math.Float32bits(float32(v)))
		case "FP64":
			b = binary.LittleEndian.AppendUint64(b, math.Float64bits(v))
		case "INT64":
			b = binary.LittleEndian.AppendUint64(b, uint64(int64(v)))
		case "INT32":
			b = binary.LittleEndian.AppendUint32(b, uint32(int32(v)))
		case "INT16":
			b = binary.LittleEndian.AppendUint16(b, uint16(int16(v)))
		case "UINT16":
			b = binary.LittleEndian.AppendUint16(b, uint16(v))
		case "UINT32":
			b = binary.LittleEndian.AppendUint32(b, uint32(v))
		case "UINT64":
			b = binary.LittleEndian.AppendUint64(b, uint64(v))
		case "INT8":
			b = append(b, byte(int8(v)))
		case "UINT8", "BOOL":
			b = append(b, byte(v))
		case "FP16": // the tests' values are exact in binary16
			f := float32(v)
			bits := math.Float32bits(f)
			sign := uint16(bits>>16) & 0x8000
			exp := int(bits>>23&0xff) - 127 + 15
			mant := uint16(bits>>13) & 0x3ff
			h := sign
			if v != 0 {
				h |= uint16(exp)<<10 | mant
			}
			b = binary.LittleEndian.AppendUint16(b, h)
		}
	}
	return b
}

func closeTo(t *testing.T, what string, got, want []float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values %v, want %d %v", what, len(got), got, len(want), want)
	}
	for i := range got {
		if math.Abs(got[i]-want[i]) > 1e-9 {
			t.Fatalf("%s: %v, want %v", what, got, want)
		}
	}
}

func TestV2_Conformance(t *testing.T) {
	a := testNode(t)
	waitLeader(t, a)
	createModel(t, a, "iris")
	uploadOK(t, a, "iris", "", readTestdata(t, linearIrisFile))
	deployAndWait(t, a, "iris")
	const infer = "/v2/models/iris/infer"

	t.Run("server metadata", func(t *testing.T) {
		r := call(t, a, "GET", "/v2", "")
		exts, _ := r.body["extensions"].([]any)
		if r.status != 200 || r.body["name"] != "kiln" || r.body["version"] != Version || len(exts) != 1 || exts[0] != "binary_tensor_data" {
			t.Fatalf("GET /v2 = %d %s", r.status, r.raw)
		}
	})

	row := []float64{5.1, 3.5, 1.4, 0.2}
	base := inferJSON(t, a, infer, `{"inputs":[{"name":"input","shape":[1,4],"datatype":"FP64","data":[5.1,3.5,1.4,0.2]}]}`)
	if base.status != 200 || len(base.outputs["output"]) != 3 {
		t.Fatalf("JSON infer = %d %s", base.status, base.raw)
	}
	want := base.outputs["output"]

	t.Run("parameters at every level, nested data, outputs chosen", func(t *testing.T) {
		r := inferJSON(t, a, infer, `{"id":"p1","parameters":{"priority":1,"note":"x","fast":true},
			"inputs":[{"name":"input","shape":[1,4],"datatype":"FP64","parameters":{"layout":"rows"},"data":[[5.1,3.5,1.4,0.2]]}],
			"outputs":[{"name":"output","parameters":{"classification":0}}]}`)
		if r.status != 200 || r.body["id"] != "p1" || r.body["model_version"] != "1" {
			t.Fatalf("%d %s", r.status, r.raw)
		}
		closeTo(t, "output", r.outputs["output"], want)
	})

	t.Run("every numeric datatype, as JSON and as binary", func(t *testing.T) {
		// An integer row, so that every datatype holds it exactly.
		ints := []float64{5, 3, 1, 0}
		ref := inferJSON(t, a, infer, `{"inputs":[{"name":"input","shape":[1,4],"datatype":"FP64","data":[5,3,1,0]}]}`).outputs["output"]
		bools := []float64{1, 0, 1, 1}
		refBool := inferJSON(t, a, infer, `{"inputs":[{"name":"input","shape":[1,4],"datatype":"FP64","data":[1,0,1,1]}]}`).outputs["output"]
		for _, dt := range []string{"FP16", "FP32", "FP64", "INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64", "BOOL"} {
			vals, w, data := ints, ref, "[5,3,1,0]"
			if dt == "BOOL" {
				vals, w, data = bools, refBool, "[true,false,true,true]"
			}
			r := inferJSON(t, a, infer, fmt.Sprintf(`{"inputs":[{"name":"input","shape":[1,4],"datatype":%q,"data":%s}]}`, dt, data))
			if r.status != 200 {
				t.Fatalf("%s as JSON: %d %s", dt, r.status, r.raw)
			}
			closeTo(t, dt+" as JSON", r.outputs["output"], w)
			raw := le(dt, vals...)
			body, n := binaryBody(fmt.Sprintf(`{"inputs":[{"name":"input","shape":[1,4],"datatype":%q,"parameters":{"binary_data_size":%d}}]}`, dt, len(raw)), raw)
			r = inferRaw(t, a, infer, body, n)
			if r.status != 200 {
				t.Fatalf("%s as binary: %d %s", dt, r.status, r.raw)
			}
			closeTo(t, dt+" as binary", r.outputs["output"], w)
		}
	})

	t.Run("binary outputs", func(t *testing.T) {
		// As Triton's Python client sends infer by default: the input as
		// binary data, and no outputs named, so binary_data_output.
		raw := le("FP32", row...)
		head := `{"inputs":[{"name":"input","shape":[1,4],"datatype":"FP32","parameters":{"binary_data_size":16}}],"parameters":{"binary_data_output":true}}`
		body, n := binaryBody(head, raw)
		r := inferRaw(t, a, infer, body, n)
		if r.status != 200 || r.header.Get("Inference-Header-Content-Length") == "" || r.header.Get("Content-Type") != "application/octet-stream" {
			t.Fatalf("binary infer = %d %v %s", r.status, r.header, r.raw)
		}
		out := r.body["outputs"].([]any)[0].(map[string]any)
		if out["parameters"].(map[string]any)["binary_data_size"] != float64(24) || out["data"] != nil {
			t.Fatalf("binary output %v", out)
		}
		f32 := make([]float64, 4)
		for i, x := range row {
			f32[i] = float64(float32(x))
		}
		ref := inferJSON(t, a, infer, fmt.Sprintf(`{"inputs":[{"name":"input","shape":[1,4],"datatype":"FP64","data":[%v,%v,%v,%v]}]}`, f32[0], f32[1], f32[2], f32[3]))
		closeTo(t, "binary output", r.outputs["output"], ref.outputs["output"])
		// binary_data on an output overrides the request's.
		r = inferJSON(t, a, infer, `{"parameters":{"binary_data_output":true},"inputs":[{"name":"input","shape":[1,4],"datatype":"FP64","data":[5.1,3.5,1.4,0.2]}],"outputs":[{"name":"output","parameters":{"binary_data":false}}]}`)
		if r.status != 200 || r.header.Get("Inference-Header-Content-Length") != "" {
			t.Fatalf("binary_data false: %d %v", r.status, r.header)
		}
		closeTo(t, "JSON output", r.outputs["output"], want)
	})

	t.Run("errors", func(t *testing.T) {
		good := le("FP64", row...)
		head := func(size int) string {
			return fmt.Sprintf(`{"inputs":[{"name":"input","shape":[1,4],"datatype":"FP64","parameters":{"binary_data_size":%d}}]}`, size)
		}
		for _, tc := range []struct {
			name   string
			body   []byte
			header int
			want   string
		}{
			{"header longer than the body", []byte(head(32)), 500, "has only"},
			{"binary data shorter than its size", func() []byte { b, _ := binaryBody(head(32), good[:20]); return b }(), len(head(32)), "runs past the end of the body"},
			{"size not the shape's", func() []byte { b, _ := binaryBody(head(24), good[:24]); return b }(), len(head(24)), "needs 32 bytes"},
			{"bytes after the inputs", func() []byte { b, _ := binaryBody(head(32), good, []byte{1, 2}); return b }(), len(head(32)), "2 bytes after"},
			{"binary size without the header", []byte(head(32)), -1, "Inference-Header-Content-Length"},
			{"data and binary", []byte(`{"inputs":[{"name":"input","shape":[1,4],"datatype":"FP64","parameters":{"binary_data_size":0},"data":[1,2,3,4]}]}`), -1, "binary_data_size"},
			{"an unknown output", []byte(`{"inputs":[{"name":"input","shape":[1,4],"datatype":"FP64","data":[1,2,3,4]}],"outputs":[{"name":"probs"}]}`), -1, `outputs[0].name \"probs\"`},
			{"an integer type's fraction", []byte(`{"inputs":[{"name":"input","shape":[1,4],"datatype":"INT32","data":[1,2.5,3,4]}]}`), -1, "inputs[0].data[1] is 2.5: not a value of datatype INT32"},
			{"a UINT8 out of range", []byte(`{"inputs":[{"name":"input","shape":[1,4],"datatype":"UINT8","data":[1,2,300,4]}]}`), -1, "data[2] is 300: not a value of datatype UINT8"},
			{"a BOOL byte of 2", func() []byte {
				h := `{"inputs":[{"name":"input","shape":[1,4],"datatype":"BOOL","parameters":{"binary_data_size":4}}]}`
				b, _ := binaryBody(h, []byte{1, 0, 2, 1})
				return b
			}(), len(`{"inputs":[{"name":"input","shape":[1,4],"datatype":"BOOL","parameters":{"binary_data_size":4}}]}`), "element 2 is the byte 2"},
			{"BYTES", []byte(`{"inputs":[{"name":"input","shape":[1],"datatype":"BYTES","data":["x"]}]}`), -1, "datatype BYTES (input \\\"input\\\") is not taken"},
			{"an unknown datatype", []byte(`{"inputs":[{"name":"input","shape":[1],"datatype":"BF16","data":[1]}]}`), -1, "not a v2 datatype"},
			{"a parameter that is an object", []byte(`{"parameters":{"x":{"y":1}},"inputs":[{"name":"input","shape":[1,4],"datatype":"FP64","data":[1,2,3,4]}]}`), -1, "request.parameters.x"},
			{"binary_data not a boolean", []byte(`{"inputs":[{"name":"input","shape":[1,4],"datatype":"FP64","data":[1,2,3,4]}],"outputs":[{"name":"output","parameters":{"binary_data":"yes"}}]}`), -1, "binary_data must be true or false"},
			{"another model's name", []byte(`{"model_name":"wine","inputs":[{"name":"input","shape":[1,4],"datatype":"FP64","data":[1,2,3,4]}]}`), -1, "model_name"},
			{"a bad header", []byte(`{}`), -2, "not a length"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				var r v2Response
				if tc.header == -2 {
					req, _ := http.NewRequest("POST", "http://"+a.HTTPAddr()+infer, bytes.NewReader(tc.body))
					req.Header.Set("Inference-Header-Content-Length", "x")
					resp, err := http.DefaultClient.Do(req)
					if err != nil {
						t.Fatal(err)
					}
					raw, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					r = v2Response{status: resp.StatusCode, raw: raw}
				} else {
					r = inferRaw(t, a, infer, tc.body, tc.header)
				}
				if r.status != 400 || !strings.Contains(string(r.raw), tc.want) {
					t.Fatalf("%d %s, want 400 with %q", r.status, r.raw, tc.want)
				}
			})
		}
	})
}
