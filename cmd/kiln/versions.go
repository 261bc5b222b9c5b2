package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

const modelsPushHelp = `Usage: kiln models push [flags] NAME [FILE]

  Uploads FILE as the next version of model NAME and prints the version,
  creating the model first when it does not exist (as a training job's
  register_as does); -no-create refuses instead. The file is streamed, never
  read whole; over 8 MiB, when stderr is a terminal, a progress bar follows
  what the node has received (the upload goes with ?async=true and the bar
  reads GET /v1/uploads/ID), then the copies it makes. The node checks that
  the file loads before it records the version.

  -no-create              fail when model NAME does not exist

  -model-format FORMAT    linear, lightgbm, xgboost, xgboost-json, onnx or
                          process; detected from the file when not given
                          (-format is the output format, as everywhere)
  -metadata KEY=VALUE     version metadata (repeatable)
  -process-command 'CMD ARGS...'
                          serve with your own process (format process): the
                          command, split on spaces; it speaks the Open
                          Inference Protocol v2 on $KILN_PORT
  -process JSON           the full process spec instead, e.g.
                          {"command":["python","serve.py"],"env":{"K":"V"},"model_name":"m"}
  -schema JSON            inputs and outputs of a process version, e.g.
                          {"inputs":[{"name":"x","datatype":"FP32","shape":[-1,4]}],"outputs":[]}
  -address ADDR           node HTTP address (env KILN_ADDR)
  -format FMT             table or json

  FILE may be left out (or given as -) for a process version that loads its
  own files; the process then gets no KILN_MODEL_PATH.`

// progressMinSize is the upload size from which push shows a progress bar.
// Tests lower it.
var progressMinSize int64 = 8 << 20

func modelsPushCommand() *command {
	return &command{synopsis: "Upload a model file as a new version", help: modelsPushHelp, run: runModelsPush}
}

func runModelsPush(args []string) int {
	fs, cf := newClientFlags("models push")
	modelFormat := fs.String("model-format", "", "")
	processCmd := fs.String("process-command", "", "")
	processJSON := fs.String("process", "", "")
	schemaJSON := fs.String("schema", "", "")
	noCreate := fs.Bool("no-create", false, "")
	var metadata stringList
	fs.Var(&metadata, "metadata", "")
	c, err := connect(fs, cf, args, -1, modelsPushHelp)
	if err != nil {
		return fail(err)
	}
	if fs.NArg() > 2 {
		return fail(fmt.Errorf("expected NAME and at most one FILE, got %d arguments\n%s", fs.NArg(), modelsPushHelp))
	}
	name, file := fs.Arg(0), fs.Arg(1)
	if file == "-" {
		file = ""
	}
	q, err := pushQuery(*modelFormat, *processCmd, *processJSON, *schemaJSON, metadata)
	if err != nil {
		return fail(err)
	}
	if file == "" && q.Get("format") != "process" {
		return fail(fmt.Errorf("FILE is required unless the version is served by a process (-process-command or -process)\n%s", modelsPushHelp))
	}
	if file != "" {
		if _, err := os.Stat(file); err != nil {
			return fail(err) // before the model is made for it
		}
	}
	if err := c.ensureModel(name, *noCreate, cf.format == "json"); err != nil {
		return fail(err)
	}
	path := "/v1/models/" + url.PathEscape(name) + "/versions"
	var v map[string]any
	if err := c.uploadVersion(path, q, file, &v); err != nil {
		return fail(withFormatHint(err, "-model-format"))
	}
	if cf.format == "json" {
		printJSON(v)
		return 0
	}
	holders := strings.Join(stringsOf(v["holders"]), ",")
	printTable([]string{"MODEL", "VERSION", "FORMAT", "SIZE", "DIGEST", "HOLDERS"}, [][]string{{
		str(v["model"]), str(v["version"]), str(v["format"]), formatBytes(v["size"]), dash(shortDigest(v["digest"])), dash(holders),
	}})
	return 0
}

// ensureModel creates model name when it does not exist, unless noCreate;
// it says so on stderr when quiet (JSON output), else on stdout. The
// upload then goes in one pass: a file is never read twice.
func (c *client) ensureModel(name string, noCreate, quiet bool) error {
	err := c.do("GET", "/v1/models/"+url.PathEscape(name), nil, nil)
	var ae *apiError
	if err == nil || !errors.As(err, &ae) || ae.Code != "not_found" {
		return err
	}
	if noCreate {
		return fmt.Errorf("model %s does not exist, and -no-create was given: create it with kiln models create %s, or push without -no-create", name, name)
	}
	if err := c.do("POST", "/v1/models", map[string]string{"name": name}, nil); err != nil {
		if errors.As(err, &ae) && ae.Code == "already_exists" {
			return nil // another client created it meanwhile
		}
		return err
	}
	w := os.Stdout
	if quiet {
		w = os.Stderr
	}
	fmt.Fprintf(w, "Created model %s\n", name)
	return nil
}

// uploadVersion uploads a model file as a version: over progressMinSize,
// when a progress bar is drawn, asynchronously, the bar following what the
// node has received and copied; otherwise in one request (uploadFile).
func (c *client) uploadVersion(path string, q url.Values, file string, out any) error {
	w, show := progressOutput()
	if file == "" || !show {
		return c.uploadFile(withQuery(path, q), file, out)
	}
	st, err := os.Stat(file)
	if err != nil || st.Size() <= progressMinSize {
		return c.uploadFile(withQuery(path, q), file, out)
	}
	q = maps.Clone(q)
	q.Set("async", "true")
	return c.uploadAsync(withQuery(path, q), file, st.Size(), w, out)
}

func withQuery(path string, q url.Values) string {
	if len(q) == 0 {
		return path
	}
	return path + "?" + q.Encode()
}

// progressOutput is where progress bars go: stderr when it is a terminal.
// Tests replace it.
var progressOutput = func() (io.Writer, bool) { return os.Stderr, isTerminal(os.Stderr) }

// uploadPoll is how often an asynchronous upload's progress is read.
var uploadPoll = 200 * time.Millisecond

// uploadAsync sends file to path (with async=true) and, once the node has
// answered 202 with an upload ID, draws the upload's progress from GET
// /v1/uploads/ID until it is done, then reads the version into out. The
// answer is held open until the body is sent: a Go client that closes it
// earlier stops sending.
func (c *client) uploadAsync(path, file string, size int64, w io.Writer, out any) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	req, err := http.NewRequest("POST", c.base+path, f)
	if err != nil {
		return err
	}
	req.ContentLength = size
	req.Header.Set("Content-Type", "application/octet-stream")
	c.http.Timeout = 0 // a large upload takes as long as it takes
	resp, err := c.send(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var accepted struct {
		UploadID string `json:"upload_id"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&accepted); err != nil || accepted.UploadID == "" {
		return fmt.Errorf("reading the upload's ID: %v", err)
	}
	p := newProgressReader(nil, size, w, "Uploading "+filepath.Base(file))
	poll := &client{base: c.base, token: c.token, http: &http.Client{Transport: c.http.Transport, Timeout: 30 * time.Second}}
	for {
		var u struct {
			State         string    `json:"state"`
			BytesReceived int64     `json:"bytes_received"`
			Copies        int       `json:"copies"`
			Model         string    `json:"model"`
			Version       uint64    `json:"version"`
			Error         *apiError `json:"error"`
		}
		if err := poll.do("GET", "/v1/uploads/"+url.PathEscape(accepted.UploadID), nil, &u); err != nil {
			p.finish()
			return err
		}
		p.done = u.BytesReceived
		p.label = "Uploading " + filepath.Base(file)
		if u.State != "receiving" {
			p.label = fmt.Sprintf("%s (%s, %d copies)", filepath.Base(file), u.State, u.Copies)
		}
		p.draw(p.now())
		switch u.State {
		case "done":
			p.last = p.now()
			p.finish()
			return poll.do("GET", fmt.Sprintf("/v1/models/%s/versions/%d", url.PathEscape(u.Model), u.Version), nil, out)
		case "failed":
			p.last = p.now()
			p.finish()
			if u.Error != nil {
				return u.Error
			}
			return fmt.Errorf("the upload failed")
		}
		time.Sleep(uploadPoll)
	}
}

// uploadFile streams file as the body of a POST to path and decodes the JSON
// answer into out; file "" sends an empty body. The file is never read whole:
// it goes out with its Content-Length, without the client's timeout, and
// over progressMinSize a progress bar is drawn on stderr when that is a
// terminal. Both push commands upload through it.
func (c *client) uploadFile(path, file string, out any) error {
	body, size := io.Reader(http.NoBody), int64(0)
	var progress *progressReader
	if file != "" {
		f, err := os.Open(file)
		if err != nil {
			return err
		}
		defer f.Close()
		st, err := f.Stat()
		if err != nil {
			return err
		}
		if !st.Mode().IsRegular() {
			return fmt.Errorf("%s is not a regular file", file)
		}
		body, size = f, st.Size()
		if w, show := progressOutput(); size > progressMinSize && show {
			progress = newProgressReader(f, size, w, "Uploading "+filepath.Base(file))
			body = progress
		}
	}
	req, err := http.NewRequest("POST", c.base+path, body)
	if err != nil {
		return err
	}
	req.ContentLength = size // a file is not a type NewRequest measures
	req.Header.Set("Content-Type", "application/octet-stream")
	c.http.Timeout = 0 // a large upload takes as long as it takes
	resp, err := c.send(req)
	if progress != nil {
		progress.finish()
	}
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("reading the created version: %w", err)
	}
	return nil
}

// withFormatHint adds to a node's "give ?format=" refusal which flag of the
// push command gives the format.
func withFormatHint(err error, flagName string) error {
	var ae *apiError
	if errors.As(err, &ae) && strings.Contains(ae.Message, "?format=") {
		return fmt.Errorf("%w\nGive the format with %s FORMAT", err, flagName)
	}
	return err
}

// pushQuery builds the upload's query parameters from push's flags.
func pushQuery(modelFormat, processCmd, processJSON, schemaJSON string, metadata []string) (url.Values, error) {
	q := url.Values{}
	if processCmd != "" && processJSON != "" {
		return nil, errors.New("give -process-command or -process, not both")
	}
	process := processJSON
	if processCmd != "" {
		b, err := json.Marshal(map[string]any{"command": strings.Fields(processCmd)})
		if err != nil {
			return nil, err
		}
		process = string(b)
	}
	if process != "" {
		if !isJSONObject(process) {
			return nil, fmt.Errorf("-process must be a JSON object like {\"command\":[\"python\",\"serve.py\"]}, not %q", process)
		}
		if modelFormat != "" && modelFormat != "process" {
			return nil, fmt.Errorf("-model-format %s cannot be served by a process; leave it out or use process", modelFormat)
		}
		modelFormat = "process"
		q.Set("process", process)
	}
	if schemaJSON != "" {
		if modelFormat != "process" {
			return nil, errors.New("-schema is only for process versions; other formats carry their own schema")
		}
		if !isJSONObject(schemaJSON) {
			return nil, fmt.Errorf("-schema must be a JSON object with inputs and outputs, not %q", schemaJSON)
		}
		q.Set("schema", schemaJSON)
	}
	if modelFormat == "process" && process == "" {
		return nil, errors.New("-model-format process needs -process-command or -process")
	}
	if modelFormat != "" {
		q.Set("format", modelFormat)
	}
	if len(metadata) > 0 {
		md, err := parseKeyValues("metadata", metadata)
		if err != nil {
			return nil, err
		}
		b, err := json.Marshal(md)
		if err != nil {
			return nil, err
		}
		q.Set("metadata", string(b))
	}
	return q, nil
}

// parseKeyValues reads repeated KEY=VALUE flags into a map.
func parseKeyValues(flagName string, pairs []string) (map[string]string, error) {
	out := make(map[string]string, len(pairs))
	for _, p := range pairs {
		k, v, ok := strings.Cut(p, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("-%s %q must be KEY=VALUE", flagName, p)
		}
		out[k] = v
	}
	return out, nil
}

func isJSONObject(s string) bool {
	var m map[string]json.RawMessage
	return json.Unmarshal([]byte(s), &m) == nil && m != nil
}

// isTerminal reports whether f is a character device (a terminal), where
// carriage-return progress lines make sense.
func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// progressReader counts the bytes read through it and redraws one progress
// line (percent, bytes, throughput) on w, at most five times a second.
type progressReader struct {
	r     io.Reader
	w     io.Writer
	label string
	total int64
	done  int64
	start time.Time
	last  time.Time // when the line was last drawn; zero before the first
	now   func() time.Time
}

func newProgressReader(r io.Reader, total int64, w io.Writer, label string) *progressReader {
	p := &progressReader{r: r, w: w, label: label, total: total, now: time.Now}
	p.start = p.now()
	return p
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.done += int64(n)
	if now := p.now(); now.Sub(p.last) >= 200*time.Millisecond || (p.done == p.total && n > 0) {
		p.last = now
		p.draw(now)
	}
	return n, err
}

func (p *progressReader) draw(now time.Time) {
	pct := 100.0
	if p.total > 0 {
		pct = float64(p.done) * 100 / float64(p.total)
	}
	rate := 0.0
	if s := now.Sub(p.start).Seconds(); s > 0 {
		rate = float64(p.done) / s / 1e6
	}
	fmt.Fprintf(p.w, "\r%s %5.1f%% %.1f/%.1f MB %.1f MB/s ", p.label, pct, float64(p.done)/1e6, float64(p.total)/1e6, rate)
}

// finish ends the progress line. The last read already drew it; drawing
// again now would fold the node's checking time into the throughput.
func (p *progressReader) finish() {
	if p.last.IsZero() {
		p.draw(p.now())
	}
	fmt.Fprintln(p.w)
}

// formatBytes renders a JSON byte count for tables.
func formatBytes(v any) string {
	n, ok := v.(float64)
	if !ok {
		return str(v)
	}
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", n/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", n/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", n/(1<<10))
	}
	return fmt.Sprintf("%.0f B", n)
}

// shortDigest is the first 12 characters of a decoded digest, enough to tell
// versions apart in a table.
func shortDigest(v any) string {
	d := str(v)
	if len(d) > 12 {
		d = d[:12]
	}
	return d
}

// stringsOf renders each element of a decoded JSON array.
func stringsOf(v any) []string {
	raw, _ := v.([]any)
	out := make([]string, 0, len(raw))
	for _, x := range raw {
		out = append(out, str(x))
	}
	return out
}

// dash stands in for an empty table cell.
func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// tensorSpecs renders a schema's inputs or outputs as name:TYPE[shape].
func tensorSpecs(v any) string {
	var parts []string
	for _, x := range asMaps(v) {
		part := str(x["name"]) + ":" + str(x["datatype"])
		part += "[" + strings.Join(stringsOf(x["shape"]), ",") + "]"
		parts = append(parts, part)
	}
	return dash(strings.Join(parts, " "))
}

func asMaps(v any) []map[string]any {
	raw, _ := v.([]any)
	out := make([]map[string]any, 0, len(raw))
	for _, x := range raw {
		if m, ok := x.(map[string]any); ok {
			out = append(out, m)
		}
	}
	return out
}

func modelsVersionsCommand() *command {
	usage := "Usage: kiln models versions [-address ADDR] [-format table|json] NAME\n\n  Lists the versions of a model with their format, size and schema."
	return &command{synopsis: "List a model's versions", help: usage, run: func(args []string) int {
		fs, cf := newClientFlags("models versions")
		c, err := connect(fs, cf, args, 1, usage)
		if err != nil {
			return fail(err)
		}
		return printList(c, cf, "/v1/models/"+url.PathEscape(fs.Arg(0))+"/versions",
			[]string{"VERSION", "FORMAT", "SIZE", "CREATED", "INPUTS", "OUTPUTS"}, func(v map[string]any) []string {
				schema, _ := v["schema"].(map[string]any)
				return []string{
					str(v["version"]), str(v["format"]), formatBytes(v["size"]), str(v["created_at"]),
					tensorSpecs(schema["inputs"]), tensorSpecs(schema["outputs"]),
				}
			})
	}}
}

// printList fetches every item of a paged collection and prints them: as
// {"items": [...]} with -format json, else as a table of row(item).
func printList(c *client, cf *clientFlags, path string, headers []string, row func(map[string]any) []string) int {
	all, err := listAll(c, path)
	if err != nil {
		return fail(err)
	}
	if cf.format == "json" {
		printJSON(map[string]any{"items": all})
		return 0
	}
	rows := make([][]string, len(all))
	for i, it := range all {
		rows[i] = row(it)
	}
	printTable(headers, rows)
	return 0
}

// listAll follows a collection's cursors and returns every item. path may
// carry query parameters of its own (a search's filter).
func listAll(c *client, path string) ([]map[string]any, error) {
	var all []map[string]any
	cursor, sep := "", "?"
	if strings.Contains(path, "?") {
		sep = "&"
	}
	for {
		q := url.Values{"limit": {"1000"}}
		if cursor != "" {
			q.Set("cursor", cursor)
		}
		var page map[string]any
		if err := c.do("GET", path+sep+q.Encode(), nil, &page); err != nil {
			return nil, err
		}
		all = append(all, items(page)...)
		if cursor = str(page["next_cursor"]); cursor == "" {
			return all, nil
		}
	}
}

func modelsAliasCommand() *command {
	usage := `Usage: kiln models alias [flags] NAME ALIAS VERSION
       kiln models alias -delete [flags] NAME ALIAS

  Points an alias (champion, challenger ...) of a model at a version, or
  removes it. Predictions can then ask for the alias instead of a number.

  -delete        remove the alias
  -address ADDR  node HTTP address (env KILN_ADDR)
  -format FMT    table or json`
	return &command{synopsis: "Point a model alias at a version", help: usage, run: func(args []string) int {
		fs, cf := newClientFlags("models alias")
		del := fs.Bool("delete", false, "")
		c, err := connect(fs, cf, args, -2, usage)
		if err != nil {
			return fail(err)
		}
		if want := map[bool]int{false: 3, true: 2}[*del]; fs.NArg() != want {
			return fail(fmt.Errorf("expected %d argument(s), got %d\n%s", want, fs.NArg(), usage))
		}
		name, alias := fs.Arg(0), fs.Arg(1)
		path := "/v1/models/" + url.PathEscape(name) + "/aliases/" + url.PathEscape(alias)
		var m map[string]any
		if *del {
			err = c.do("DELETE", path, nil, &m)
		} else {
			var n uint64
			if n, err = parseVersion("VERSION", fs.Arg(2)); err != nil {
				return fail(err)
			}
			err = c.do("PUT", path, map[string]uint64{"version": n}, &m)
		}
		if err != nil {
			return fail(err)
		}
		if cf.format == "json" {
			printJSON(m)
			return 0
		}
		if *del {
			fmt.Printf("Removed alias %s of model %s\n", alias, name)
		} else {
			fmt.Printf("Alias %s of model %s now points at version %s\n", alias, name, fs.Arg(2))
		}
		return 0
	}}
}

// parseVersion reads a version number (1, 2, ...).
func parseVersion(what, s string) (uint64, error) {
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("%s must be a version number (1, 2, ...), not %q", what, s)
	}
	return n, nil
}

func modelsMetricsCommand() *command {
	usage := "Usage: kiln models metrics [-address ADDR] [-format table|json] NAME\n\n  Shows request and error counts and latency percentiles per version,\n  summed over every node's ingress."
	return &command{synopsis: "Show a model's serving metrics", help: usage, run: func(args []string) int {
		fs, cf := newClientFlags("models metrics")
		c, err := connect(fs, cf, args, 1, usage)
		if err != nil {
			return fail(err)
		}
		var m map[string]any
		if err := c.do("GET", "/v1/models/"+url.PathEscape(fs.Arg(0))+"/metrics", nil, &m); err != nil {
			return fail(err)
		}
		if cf.format == "json" {
			printJSON(m)
			return 0
		}
		versions := asMaps(m["versions"])
		sort.Slice(versions, func(i, j int) bool { return num(versions[i]["version"]) < num(versions[j]["version"]) })
		var rows [][]string
		for _, v := range versions {
			rows = append(rows, []string{
				str(v["version"]), str(v["requests"]), str(v["errors"]),
				fmt.Sprintf("%.2f", num(v["p50_ms"])), fmt.Sprintf("%.2f", num(v["p95_ms"])), fmt.Sprintf("%.2f", num(v["p99_ms"])),
			})
		}
		printTable([]string{"VERSION", "REQUESTS", "ERRORS", "P50_MS", "P95_MS", "P99_MS"}, rows)
		if n := num(m["nodes_missing"]); n > 0 {
			fmt.Fprintf(os.Stderr, "Warning: %.0f node(s) did not answer; their requests are not counted\n", n)
		}
		return 0
	}}
}

// num reads a decoded JSON number; anything else is 0.
func num(v any) float64 {
	f, _ := v.(float64)
	return f
}

const modelsPullHelp = `Usage: kiln models pull [flags] NAME[:VERSION] FILE

  Downloads the model file of a version (the latest without :VERSION) to
  FILE (- for stdout), streamed, and checks its sha256 against the
  registry's. A partial or corrupt download leaves no FILE behind.

  -address ADDR           node HTTP address (env KILN_ADDR)`

func modelsPullCommand() *command {
	return &command{synopsis: "Download a version's model file", help: modelsPullHelp, run: runModelsPull}
}

func runModelsPull(args []string) int {
	fs, cf := newClientFlags("models pull")
	c, err := connect(fs, cf, args, 2, modelsPullHelp)
	if err != nil {
		return fail(err)
	}
	name, version, _ := strings.Cut(fs.Arg(0), ":")
	if version == "" {
		var m map[string]any
		if err := c.do("GET", "/v1/models/"+url.PathEscape(name), nil, &m); err != nil {
			return fail(err)
		}
		if version = str(m["latest_version"]); version == "" || version == "0" {
			return fail(fmt.Errorf("model %s has no version", name))
		}
	}
	c.http.Timeout = 0 // a large file takes as long as it takes
	resp, err := c.raw("GET", "/v1/models/"+url.PathEscape(name)+"/versions/"+url.PathEscape(version)+"/file", nil)
	if err != nil {
		return fail(err)
	}
	defer resp.Body.Close()
	if err := saveVerified(resp.Body, fs.Arg(1), resp.Header.Get("X-Kiln-Digest")); err != nil {
		return fail(err)
	}
	if fs.Arg(1) != "-" {
		fmt.Fprintf(os.Stderr, "%s version %s (%s) saved to %s\n", name, version, resp.Header.Get("X-Kiln-Format"), fs.Arg(1))
	}
	return 0
}

// saveVerified writes r to path (stdout for -) through a temporary file
// in the same directory, renamed into place only once the sha256 of what
// came matches digest.
func saveVerified(r io.Reader, path, digest string) error {
	h := sha256.New()
	if path == "-" {
		if _, err := io.Copy(io.MultiWriter(os.Stdout, h), r); err != nil {
			return err
		}
		return checkDigest(h.Sum(nil), digest)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".kiln-pull-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := io.Copy(io.MultiWriter(tmp, h), r); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := checkDigest(h.Sum(nil), digest); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

func checkDigest(sum []byte, digest string) error {
	if got := hex.EncodeToString(sum); digest != "" && got != digest {
		return fmt.Errorf("the file's sha256 is %s, the registry says %s: not saved", got, digest)
	}
	return nil
}
