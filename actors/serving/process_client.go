package serving

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kilnml/kiln/ml"
)

// Predict sends inputs to the server's /v2/models/{name}/infer. A 400 (or
// 422) from the server wraps ml.ErrBadInput with its message; every other
// failure, including a server that is restarting or gone, wraps
// ml.ErrRuntime.
func (m *ProcessModel) Predict(ctx context.Context, inputs []ml.Tensor) ([]ml.Tensor, error) {
	base, err := m.target()
	if err != nil {
		return nil, err
	}
	body, err := m.encodeInfer(inputs)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost,
		base+"/v2/models/"+url.PathEscape(m.name)+"/infer", bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("%w: serving: process for model %q: %w", ml.ErrRuntime, m.cfg.Model, err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := m.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w: serving: process for model %q: %w", ml.ErrRuntime, m.cfg.Model, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, processMaxResponse+1))
	switch {
	case err != nil:
		return nil, fmt.Errorf("%w: serving: process for model %q: reading the answer: %w", ml.ErrRuntime, m.cfg.Model, err)
	case len(data) > processMaxResponse:
		return nil, fmt.Errorf("%w: serving: process for model %q answered more than %d bytes", ml.ErrRuntime, m.cfg.Model, processMaxResponse)
	case resp.StatusCode == http.StatusBadRequest, resp.StatusCode == http.StatusUnprocessableEntity:
		// 422 is how FastAPI-based servers (MLServer) reject a request body.
		return nil, fmt.Errorf("%w: %s", ml.ErrBadInput, serverMessage(data))
	case resp.StatusCode != http.StatusOK:
		return nil, fmt.Errorf("%w: serving: process for model %q answered %s: %s", ml.ErrRuntime, m.cfg.Model, resp.Status, serverMessage(data))
	}
	return decodeInferResponse(data, m.schema)
}

// ready asks the server once whether it is ready.
func (m *ProcessModel) ready(ctx context.Context, p *processInstance) bool {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.base+"/v2/health/ready", nil)
	if err != nil {
		return false
	}
	resp, err := m.client.Do(req)
	if err != nil {
		return false
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// fetchSchema reads the model's metadata. A server without it still serves,
// with an empty schema.
func (m *ProcessModel) fetchSchema(ctx context.Context, base string) ml.Schema {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	schema, err := m.getMetadata(ctx, base)
	if err != nil {
		m.logger.Warn("no model metadata; serving with an empty schema", "error", err)
		return ml.Schema{}
	}
	return schema
}

func (m *ProcessModel) getMetadata(ctx context.Context, base string) (ml.Schema, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v2/models/"+url.PathEscape(m.name), nil)
	if err != nil {
		return ml.Schema{}, err
	}
	resp, err := m.client.Do(req)
	if err != nil {
		return ml.Schema{}, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, processMaxMetadata))
	if err != nil {
		return ml.Schema{}, err
	}
	if resp.StatusCode != http.StatusOK {
		return ml.Schema{}, fmt.Errorf("GET /v2/models/%s answered %s: %s", m.name, resp.Status, serverMessage(data))
	}
	return decodeMetadata(data)
}

// v2Metadata is a model's metadata in the Open Inference Protocol v2.
type v2Metadata struct {
	Name     string         `json:"name"`
	Versions []string       `json:"versions"`
	Platform string         `json:"platform"`
	Inputs   []v2TensorSpec `json:"inputs"`
	Outputs  []v2TensorSpec `json:"outputs"`
}

type v2TensorSpec struct {
	Name     string  `json:"name"`
	DataType string  `json:"datatype"`
	Shape    []int64 `json:"shape"`
}

func decodeMetadata(data []byte) (ml.Schema, error) {
	var md v2Metadata
	if err := json.Unmarshal(data, &md); err != nil {
		return ml.Schema{}, fmt.Errorf("model metadata: %w", err)
	}
	specs := func(in []v2TensorSpec) []ml.TensorSpec {
		out := make([]ml.TensorSpec, len(in))
		for i, t := range in {
			shape := make([]int, len(t.Shape))
			for j, d := range t.Shape {
				shape[j] = int(max(d, -1)) // any negative dimension is free
			}
			out[i] = ml.TensorSpec{Name: t.Name, DataType: t.DataType, Shape: shape}
		}
		return out
	}
	return ml.Schema{Inputs: specs(md.Inputs), Outputs: specs(md.Outputs)}, nil
}

func newProcessClient() *http.Client {
	return &http.Client{Transport: &http.Transport{
		Proxy: nil, // the server is on loopback; HTTP_PROXY must not apply
		DialContext: (&net.Dialer{
			Timeout:   5 * time.Second,
			KeepAlive: 30 * time.Second,
		}).DialContext,
		// Every batcher worker may hold a connection; keeping them avoids a
		// new TCP handshake per prediction.
		MaxIdleConns:        64,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true, // gzip over loopback costs CPU and saves nothing
	}}
}

// serverMessage is the "error" of a JSON error body, else the body's start.
func serverMessage(data []byte) string {
	var e struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(data, &e) == nil && e.Error != "" {
		return e.Error
	}
	s := strings.TrimSpace(string(data))
	if len(s) > processLogTail {
		s = s[:processLogTail] + "..."
	}
	if s == "" {
		return "(no message)"
	}
	return s
}

// v2DataTypes are the Open Inference Protocol's numeric types; BYTES, the
// one other, cannot be carried by a float64 tensor.
var v2DataTypes = map[string]bool{
	"BOOL": true, "FP16": true, "FP32": true, "FP64": true,
	"INT8": true, "INT16": true, "INT32": true, "INT64": true,
	"UINT8": true, "UINT16": true, "UINT32": true, "UINT64": true,
}

// inputSpec returns the name and datatype a tensor is sent with: its own
// name, or the schema's single input when it has none; the schema's
// datatype for that name, or FP64 when the schema does not say.
func inputSpec(t ml.Tensor, schema ml.Schema) (name, datatype string) {
	name = t.Name
	if name == "" {
		name = "input"
		if len(schema.Inputs) == 1 {
			name = schema.Inputs[0].Name
		}
	}
	for _, s := range schema.Inputs {
		if s.Name == name && v2DataTypes[s.DataType] {
			return name, s.DataType
		}
	}
	return name, ml.FP64
}

// encodeInfer writes the V2 inference request by hand: encoding/json
// would take a detour through reflection for every value, and could not
// say which value is at fault.
func (m *ProcessModel) encodeInfer(inputs []ml.Tensor) ([]byte, error) {
	if len(inputs) == 0 {
		return nil, fmt.Errorf("%w: no inputs", ml.ErrBadInput)
	}
	size := 16
	for _, t := range inputs {
		size += 64 + 12*len(t.Data)
	}
	buf := make([]byte, 0, size)
	buf = append(buf, `{"inputs":[`...)
	for i, t := range inputs {
		if err := t.Check(); err != nil {
			return nil, err
		}
		name, dt := inputSpec(t, m.schema)
		if i > 0 {
			buf = append(buf, ',')
		}
		q, _ := json.Marshal(name) // a string always encodes
		buf = append(buf, `{"name":`...)
		buf = append(buf, q...)
		buf = append(buf, `,"shape":[`...)
		for j, d := range t.Shape {
			if j > 0 {
				buf = append(buf, ',')
			}
			buf = strconv.AppendInt(buf, int64(d), 10)
		}
		buf = append(buf, `],"datatype":"`...)
		buf = append(buf, dt...)
		buf = append(buf, `","data":[`...)
		for j, v := range t.Data {
			if j > 0 {
				buf = append(buf, ',')
			}
			var err error
			if buf, err = appendV2Value(buf, dt, v); err != nil {
				return nil, fmt.Errorf("%w: input %q value %d: %s", ml.ErrBadInput, name, j, err)
			}
		}
		buf = append(buf, "]}"...)
	}
	return append(buf, "]}"...), nil
}

// appendV2Value writes v as JSON in the form datatype dt calls for.
func appendV2Value(buf []byte, dt string, v float64) ([]byte, error) {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return buf, fmt.Errorf("%v cannot be sent to a process model (its JSON has no NaN, infinity or missing values)", v)
	}
	switch dt {
	case "BOOL":
		return strconv.AppendBool(buf, v != 0), nil
	case "INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64":
		if v != math.Trunc(v) {
			return buf, fmt.Errorf("%v is not an integer, and the input's datatype is %s", v, dt)
		}
		if v < 0 && dt[0] == 'U' {
			return buf, fmt.Errorf("%v is negative, and the input's datatype is %s", v, dt)
		}
		return strconv.AppendFloat(buf, v, 'f', -1, 64), nil
	case "FP32", "FP16":
		// The shortest form that reads back as the same float32: fewer
		// bytes, and the precision the server keeps anyway.
		if f := float32(v); !math.IsInf(float64(f), 0) {
			return strconv.AppendFloat(buf, float64(f), 'g', -1, 32), nil
		}
	}
	return strconv.AppendFloat(buf, v, 'g', -1, 64), nil
}

// v2InferResponse is the part of an inference answer Kiln reads.
type v2InferResponse struct {
	Outputs []struct {
		Name     string          `json:"name"`
		Shape    []int           `json:"shape"`
		DataType string          `json:"datatype"`
		Data     json.RawMessage `json:"data"`
	} `json:"outputs"`
}

// decodeInferResponse turns a V2 inference answer into tensors, in schema
// order where the schema names them. Data may be flat or nested; BOOL values
// become 1 and 0.
func decodeInferResponse(data []byte, schema ml.Schema) ([]ml.Tensor, error) {
	var resp v2InferResponse
	if err := json.Unmarshal(data, &resp); err != nil {
		return nil, fmt.Errorf("%w: serving: process answer: %w", ml.ErrRuntime, err)
	}
	if len(resp.Outputs) == 0 {
		return nil, fmt.Errorf("%w: serving: process answer has no outputs", ml.ErrRuntime)
	}
	out := make([]ml.Tensor, len(resp.Outputs))
	for i, o := range resp.Outputs {
		values, err := flattenV2Data(o.Data)
		if err != nil {
			return nil, fmt.Errorf("%w: serving: process output %q (%s): %s", ml.ErrRuntime, o.Name, o.DataType, err)
		}
		t := ml.Tensor{Name: o.Name, Shape: o.Shape, Data: values}
		if o.Shape == nil {
			t.Shape = []int{len(values)} // a server that omits the shape sends a vector
		}
		if err := t.Check(); err != nil {
			return nil, fmt.Errorf("%w: serving: process output %q: shape %v does not match its %d values", ml.ErrRuntime, o.Name, o.Shape, len(values))
		}
		out[i] = t
	}
	rank := func(name string) int {
		if i := slices.IndexFunc(schema.Outputs, func(s ml.TensorSpec) bool { return s.Name == name }); i >= 0 {
			return i
		}
		return len(schema.Outputs)
	}
	slices.SortStableFunc(out, func(a, b ml.Tensor) int { return rank(a.Name) - rank(b.Name) })
	return out, nil
}

// flattenV2Data reads a V2 data array, flat or nested to any depth, in
// row-major order.
func flattenV2Data(raw json.RawMessage) ([]float64, error) {
	var flat []float64
	if json.Unmarshal(raw, &flat) == nil {
		return flat, nil // the common case, without a token walk
	}
	// Unmarshal fills what it can before it fails; start over.
	flat = flat[:0]
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	depth := 0
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		switch v := tok.(type) {
		case json.Delim:
			switch v {
			case '[':
				depth++
			case ']':
				depth--
			default:
				return nil, errors.New("data holds an object")
			}
		case json.Number:
			f, err := strconv.ParseFloat(string(v), 64)
			if err != nil {
				return nil, fmt.Errorf("value %s: %w", v, err)
			}
			flat = append(flat, f)
		case bool:
			if v {
				flat = append(flat, 1)
			} else {
				flat = append(flat, 0)
			}
		case nil:
			flat = append(flat, math.NaN())
		case string:
			return nil, errors.New("data holds strings (BYTES); Kiln carries numbers only")
		}
		if depth == 0 {
			break // a scalar, or the outer array closed
		}
	}
	if depth != 0 {
		return nil, errors.New("data is not a complete array")
	}
	return flat, nil
}
