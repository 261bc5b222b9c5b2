package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

const benchPredictHelp = `Usage: kiln bench predict [flags] NAME

  Concurrent predictions (POST /v1/models/NAME:predict) spread over the
  given nodes, every request carrying the same instances. Latency is per
  answered request; any status but 200 counts as an error.

  -address A[,B,C]  HTTP addresses of nodes; workers are spread over them
  -c N              concurrent workers (default 64)
  -d DURATION       how long to run (default 10s)
  -data JSON        the instances, e.g. '[[5.1,3.5,1.4,0.2]]'; without it
                    one row of zeros as wide as the version's input
  -version N        ask for this version (and take its schema for the zeros)
  -alias A          ask for the version an alias points at
  -baseline FILE    first run the same load against a bare net/http handler
                    (a child process) that decodes the same JSON and runs FILE
                    in-process, and print both runs and their ratio
  -baseline-format F  the format of FILE (linear, lightgbm, onnx, ...)
  -format FMT       table or json`

func benchPredictCommand() *command {
	return &command{synopsis: "Benchmark predictions", help: benchPredictHelp, run: runBenchPredict}
}

func runBenchPredict(args []string) int {
	fs, cf := newClientFlags("bench predict")
	conc := fs.Int("c", 64, "")
	dur := fs.Duration("d", 10*time.Second, "")
	data := fs.String("data", "", "")
	version := fs.Uint64("version", 0, "")
	alias := fs.String("alias", "", "")
	baseline := fs.String("baseline", "", "")
	baselineFormat := fs.String("baseline-format", "", "")
	if err := parseClientFlags(fs, cf, args, 1, benchPredictHelp); err != nil {
		return fail(err)
	}
	if *conc < 1 || *dur <= 0 {
		return fail(errors.New("-c must be >= 1 and -d > 0"))
	}
	name := fs.Arg(0)
	addrs := strings.Split(cf.address, ",")
	c, err := newClient(strings.TrimSpace(addrs[0]), cf)
	if err != nil {
		return fail(err)
	}
	instances := json.RawMessage(*data)
	if *data == "" {
		width, v, err := inputWidth(c, name, *version)
		if err != nil {
			return fail(err)
		}
		instances = zeroRow(width)
		fmt.Fprintf(os.Stderr, "No -data: sending one row of %d zeros (the input width of %s version %d)\n", width, name, v)
	} else if !isJSONArray(*data) {
		return fail(errors.New("-data must be a JSON array with one element per instance, e.g. '[[1,2,3]]'"))
	}
	body, err := json.Marshal(predictRequest{Instances: instances, Version: *version, Alias: *alias})
	if err != nil {
		return fail(err)
	}
	path := "/v1/models/" + url.PathEscape(name) + ":predict"
	// One request through the ordinary client first, outside the measured
	// window: a model that cannot answer fails here with the server's reason
	// instead of as a run of anonymous errors.
	if err := c.do("POST", path, json.RawMessage(body), nil); err != nil {
		return fail(fmt.Errorf("trial prediction: %w", err))
	}
	var base *benchResult
	if *baseline != "" {
		srv, err := startBaseline(*baselineFormat, *baseline)
		if err != nil {
			return fail(err)
		}
		r, err := runPredictLoad([]string{srv.addr}, "", path, body, *conc, *dur)
		srv.close()
		if err != nil {
			return fail(err)
		}
		base = &r
	}
	res, err := runPredictLoad(addrs, cf.token, path, body, *conc, *dur)
	if err != nil {
		return fail(err)
	}
	if base == nil {
		printBench(cf.format, res)
		return 0
	}
	ratio := res.OpsPerSec / max(base.OpsPerSec, 1e-9)
	if cf.format == "json" {
		b, _ := json.Marshal(map[string]any{"baseline": base, "kiln": res, "ratio": ratio})
		fmt.Println(string(b))
		return 0
	}
	printTable([]string{"RUN", "OPS", "OPS/S", "P50_MS", "P99_MS", "ERRORS"}, [][]string{
		benchRow("bare handler", *base), benchRow("kiln", res),
	})
	fmt.Printf("kiln / bare handler: %.2fx\n", ratio)
	return 0
}

func benchRow(name string, r benchResult) []string {
	return []string{name, fmt.Sprint(r.Ops), fmt.Sprintf("%.1f", r.OpsPerSec), fmt.Sprintf("%.2f", r.P50MS), fmt.Sprintf("%.2f", r.P99MS), fmt.Sprint(r.Errors)}
}

// runPredictLoad posts body to path from conc workers spread over addrs for d,
// with the token when not empty.
func runPredictLoad(addrs []string, token, path string, body []byte, conc int, d time.Duration) (benchResult, error) {
	conns := make([]*benchConn, conc)
	for i := range conns {
		bc, err := newBenchConn(strings.TrimSpace(addrs[i%len(addrs)]), token)
		if err != nil {
			return benchResult{}, err
		}
		conns[i] = bc
		defer bc.close()
	}
	return benchLoop(conc, d, func(worker int, _ []byte) error {
		status, err := conns[worker].do("POST", path, body)
		if err != nil {
			return err
		}
		if status != http.StatusOK {
			return fmt.Errorf("HTTP %d", status)
		}
		return nil
	}, 0), nil
}

// inputWidth returns the number of features of a version's first input
// (its shape [batch, features]): version n, or the model's latest.
func inputWidth(c *client, name string, n uint64) (int, uint64, error) {
	if n == 0 {
		var m struct {
			LatestVersion uint64 `json:"latest_version"`
		}
		if err := c.do("GET", "/v1/models/"+url.PathEscape(name), nil, &m); err != nil {
			return 0, 0, err
		}
		if m.LatestVersion == 0 {
			return 0, 0, fmt.Errorf("model %s has no versions; push one or give -data", name)
		}
		n = m.LatestVersion
	}
	var v struct {
		Schema struct {
			Inputs []struct {
				Shape []int `json:"shape"`
			} `json:"inputs"`
		} `json:"schema"`
	}
	if err := c.do("GET", fmt.Sprintf("/v1/models/%s/versions/%d", url.PathEscape(name), n), nil, &v); err != nil {
		return 0, 0, err
	}
	if in := v.Schema.Inputs; len(in) == 0 || len(in[0].Shape) != 2 || in[0].Shape[1] < 1 {
		return 0, 0, fmt.Errorf("%s version %d has no input of shape [batch, features] to fill with zeros; give -data", name, n)
	}
	return v.Schema.Inputs[0].Shape[1], n, nil
}

// zeroRow is one instance of width zeros: [[0,0,...]].
func zeroRow(width int) json.RawMessage {
	b := make([]byte, 0, 4+2*width)
	b = append(b, "[["...)
	for i := range width {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '0')
	}
	return append(b, "]]"...)
}
