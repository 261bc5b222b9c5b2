package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"strconv"
)

const predictHelp = `Usage: kiln predict [flags] NAME

  Sends instances to model NAME's deployment and prints the predictions.

  -data JSON     the instances, a JSON array with one element per instance,
                 e.g. '[[5.1,3.5,1.4,0.2],[6.2,2.9,4.3,1.3]]'
  -file FILE     JSON Lines, one instance per line (an array, or an object
                 naming inputs or features); - reads stdin. The file is sent
                 in batches and one line {"prediction": ..., "version": N} is
                 written to stdout per instance, in order
  -batch N       instances per request with -file (default 64)
  -version N     ask for this version instead of the traffic split
  -alias A       ask for the version an alias points at
  -key K         routing key: requests with the same key get the same version
  -address ADDR  node HTTP address (env KILN_ADDR)
  -format FMT    table or json (for -data)`

// predictRequest is the body of POST /v1/models/NAME:predict.
type predictRequest struct {
	Instances json.RawMessage `json:"instances"`
	Version   uint64          `json:"version,omitempty"`
	Alias     string          `json:"alias,omitempty"`
	Key       string          `json:"key,omitempty"`
}

// predictResponse is the part of the answer the CLI reads.
type predictResponse struct {
	Predictions []json.RawMessage `json:"predictions"`
	Model       string            `json:"model"`
	Version     uint64            `json:"version"`
	ID          string            `json:"id"`
}

// maxInstanceLine bounds one line of a -file.
const maxInstanceLine = 64 << 20

func predictCommand() *command {
	return &command{synopsis: "Get predictions from a deployed model", help: predictHelp, run: runPredict}
}

func runPredict(args []string) int {
	fs, cf := newClientFlags("predict")
	data := fs.String("data", "", "")
	file := fs.String("file", "", "")
	batch := fs.Int("batch", 64, "")
	version := fs.Uint64("version", 0, "")
	alias := fs.String("alias", "", "")
	key := fs.String("key", "", "")
	c, err := connect(fs, cf, args, 1, predictHelp)
	if err != nil {
		return fail(err)
	}
	if (*data == "") == (*file == "") {
		return fail(fmt.Errorf("give exactly one of -data or -file\n%s", predictHelp))
	}
	if *batch < 1 {
		return fail(fmt.Errorf("-batch must be at least 1, not %d", *batch))
	}
	path := "/v1/models/" + url.PathEscape(fs.Arg(0)) + ":predict"
	base := predictRequest{Version: *version, Alias: *alias, Key: *key}

	if *file != "" {
		in := os.Stdin
		if *file != "-" {
			f, err := os.Open(*file)
			if err != nil {
				return fail(err)
			}
			defer f.Close()
			in = f
		}
		out := bufio.NewWriter(os.Stdout)
		err := predictLines(in, *batch, func(instances []json.RawMessage) ([]json.RawMessage, uint64, error) {
			req := base
			req.Instances = joinArray(instances)
			var resp predictResponse
			if err := c.do("POST", path, req, &resp); err != nil {
				return nil, 0, err
			}
			return resp.Predictions, resp.Version, nil
		}, out)
		if ferr := out.Flush(); err == nil {
			err = ferr
		}
		if err != nil {
			return fail(err)
		}
		return 0
	}

	if !isJSONArray(*data) {
		return fail(fmt.Errorf("-data must be a JSON array with one element per instance, e.g. '[[1,2,3]]'"))
	}
	req := base
	req.Instances = json.RawMessage(*data)
	var raw json.RawMessage
	if err := c.do("POST", path, req, &raw); err != nil {
		return fail(err)
	}
	if cf.format == "json" {
		printJSON(raw)
		return 0
	}
	var resp predictResponse
	if err := json.Unmarshal(raw, &resp); err != nil {
		return fail(fmt.Errorf("reading the predictions: %w", err))
	}
	var rows [][]string
	for i, p := range resp.Predictions {
		var b bytes.Buffer
		if json.Compact(&b, p) != nil {
			b.Reset()
			b.Write(p)
		}
		rows = append(rows, []string{strconv.Itoa(i), strconv.FormatUint(resp.Version, 10), b.String()})
	}
	printTable([]string{"INSTANCE", "VERSION", "PREDICTION"}, rows)
	return 0
}

// predictLines reads one JSON instance per line from r, sends them in
// batches of size through send, and writes one {"prediction","version"} line
// per instance to w, in input order. Blank lines are skipped. It stops at the
// first error, having written the predictions of the batches before it.
func predictLines(r io.Reader, size int, send func([]json.RawMessage) ([]json.RawMessage, uint64, error), w io.Writer) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), maxInstanceLine)
	var (
		batch     []json.RawMessage
		firstLine int // line number of batch[0]
		line      int
	)
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		preds, version, err := send(batch)
		if err != nil {
			return fmt.Errorf("lines %d to %d: %w", firstLine, line, err)
		}
		if len(preds) != len(batch) {
			return fmt.Errorf("lines %d to %d: sent %d instances, got %d predictions", firstLine, line, len(batch), len(preds))
		}
		for _, p := range preds {
			b, err := json.Marshal(struct {
				Prediction json.RawMessage `json:"prediction"`
				Version    uint64          `json:"version"`
			}{p, version})
			if err != nil {
				return err
			}
			if _, err := w.Write(append(b, '\n')); err != nil {
				return err
			}
		}
		batch = batch[:0]
		return nil
	}
	for sc.Scan() {
		line++
		text := bytes.TrimSpace(sc.Bytes())
		if len(text) == 0 {
			continue
		}
		if !json.Valid(text) {
			return fmt.Errorf("line %d is not a JSON value", line)
		}
		if len(batch) == 0 {
			firstLine = line
		}
		batch = append(batch, bytes.Clone(text))
		if len(batch) == size {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return fmt.Errorf("line %d is longer than %d bytes", line+1, maxInstanceLine)
		}
		return err
	}
	return flush()
}

// joinArray makes one JSON array of already-encoded values.
func joinArray(values []json.RawMessage) json.RawMessage {
	n := 2
	for _, v := range values {
		n += len(v) + 1
	}
	b := make([]byte, 0, n)
	b = append(b, '[')
	for i, v := range values {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, v...)
	}
	return append(b, ']')
}

func isJSONArray(s string) bool {
	var a []json.RawMessage
	return json.Unmarshal([]byte(s), &a) == nil && a != nil
}
