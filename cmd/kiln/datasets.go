package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/kilnml/kiln/raftfsm/structs"
)

// The datasets noun: upload dataset files, read their schema, statistics and
// rows, delete them (DESIGN.md §7).

const datasetsConnUsage = `
  Every datasets command takes -address, -token (or KILN_TOKEN), -format
  (table or json: json prints the node's answer), and the HTTPS flags
  -ca-cert, -client-cert, -client-key.`

func datasetsCommands() map[string]*command {
	return map[string]*command{
		"datasets":          groupCommand("Manage datasets and their versions", "kiln datasets <push|list|versions|get|rows|delete>"),
		"datasets push":     datasetsPushCommand(),
		"datasets list":     datasetsListCommand(),
		"datasets versions": datasetsVersionsCommand(),
		"datasets get":      datasetsGetCommand(),
		"datasets rows":     datasetsRowsCommand(),
		"datasets delete":   datasetsDeleteCommand(),
	}
}

const datasetsPushHelp = `Usage: kiln datasets push [flags] NAME FILE

  Uploads FILE as the next version of dataset NAME (the first version
  creates the dataset) and prints the version. The node reads the file once
  for its columns, row count and statistics. The file is streamed, never
  read whole; over 8 MiB a progress bar is shown on stderr when it is a
  terminal.

  -data-format FORMAT   csv, tsv, jsonl, libsvm or parquet; detected from
                        the file when not given (-format is the output
                        format, as everywhere)
  -mode MODE            strict (the default): a bad row refuses the upload;
                        lenient: the good rows are kept and the bad ones
                        quarantined
  -schema COLUMNS       pin the columns' names and types, as
                        NAME:TYPE,NAME:TYPE... (age:int,income:float) or a
                        JSON array such as [{"name":"age","type":"int"}];
                        TYPE is int, float, bool, timestamp or string
  -no-header            a CSV or TSV file whose first line is data, not
                        column names: the columns are c0, c1, ...` + datasetsConnUsage

func datasetsPushCommand() *command {
	return &command{synopsis: "Upload a dataset file as a new version", help: datasetsPushHelp, run: runDatasetsPush}
}

func runDatasetsPush(args []string) int {
	fs, cf := newClientFlags("datasets push")
	dataFormat := fs.String("data-format", "", "")
	mode := fs.String("mode", "", "")
	schema := fs.String("schema", "", "")
	noHeader := fs.Bool("no-header", false, "")
	c, err := connect(fs, cf, args, 2, datasetsPushHelp)
	if err != nil {
		return fail(err)
	}
	q, err := datasetPushQuery(*dataFormat, *mode, *schema)
	if err != nil {
		return fail(err)
	}
	if *noHeader {
		q.Set("header", "false")
	}
	path := "/v1/datasets/" + url.PathEscape(fs.Arg(0)) + "/versions"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var v map[string]any
	if err := c.uploadFile(path, fs.Arg(1), &v); err != nil {
		return fail(withFormatHint(err, "-data-format"))
	}
	if cf.format == "json" {
		printJSON(v)
		return 0
	}
	quarantine, _ := v["quarantine"].(map[string]any)
	printTable([]string{"DATASET", "VERSION", "FORMAT", "ROWS", "BAD_ROWS", "COLUMNS", "SIZE", "DIGEST"}, [][]string{{
		str(v["dataset"]), str(v["version"]), str(v["format"]), str(v["rows"]), badRows(quarantine["rows"]),
		strconv.Itoa(len(asMaps(v["columns"]))), formatBytes(v["size"]), dash(shortDigest(v["digest"])),
	}})
	if line := quarantineLine(quarantine); line != "" {
		fmt.Println(line)
	}
	return 0
}

// datasetPushQuery builds the upload's query parameters from push's flags,
// refusing here what the node would refuse only after the file was sent.
func datasetPushQuery(dataFormat, mode, schema string) (url.Values, error) {
	q := url.Values{}
	if dataFormat != "" {
		if !slices.Contains(structs.DatasetFormats, dataFormat) {
			return nil, fmt.Errorf("-data-format %q is unknown: use one of %s, or leave it out to have the node detect it", dataFormat, strings.Join(structs.DatasetFormats, ", "))
		}
		q.Set("format", dataFormat)
	}
	if mode != "" {
		if mode != structs.ModeStrict && mode != structs.ModeLenient {
			return nil, fmt.Errorf("-mode %q is unknown: use strict (a bad row refuses the upload) or lenient (bad rows are quarantined)", mode)
		}
		q.Set("mode", mode)
	}
	if schema != "" {
		s, err := parseSchemaFlag(schema)
		if err != nil {
			return nil, err
		}
		q.Set("schema", s)
	}
	return q, nil
}

// schemaColumn is one pinned column, as the node's schema parameter takes it.
type schemaColumn struct {
	Name string `json:"name"`
	Type string `json:"type"`
}

// parseSchemaFlag turns -schema into the JSON array the node takes. The
// compact form is NAME:TYPE,NAME:TYPE... (the last ':' splits, so a name
// may hold one); a JSON array is checked and passed on as written.
func parseSchemaFlag(s string) (string, error) {
	s = strings.TrimSpace(s)
	var cols []schemaColumn
	if strings.HasPrefix(s, "[") {
		if err := json.Unmarshal([]byte(s), &cols); err != nil {
			return "", fmt.Errorf("-schema is not a JSON array of {\"name\":...,\"type\":...}: %v", err)
		}
	} else {
		for i, part := range strings.Split(s, ",") {
			part = strings.TrimSpace(part)
			cut := strings.LastIndex(part, ":")
			if cut < 0 {
				return "", fmt.Errorf("-schema column %d %q: want NAME:TYPE, such as age:int", i+1, part)
			}
			cols = append(cols, schemaColumn{Name: strings.TrimSpace(part[:cut]), Type: strings.TrimSpace(part[cut+1:])})
		}
	}
	if len(cols) == 0 {
		return "", fmt.Errorf("-schema names no columns")
	}
	seen := make(map[string]bool, len(cols))
	for i, c := range cols {
		switch {
		case c.Name == "":
			return "", fmt.Errorf("-schema column %d has no name: want NAME:TYPE, such as age:int", i+1)
		case seen[c.Name]:
			return "", fmt.Errorf("-schema names column %q twice", c.Name)
		case !slices.Contains(structs.ColumnTypes, c.Type):
			return "", fmt.Errorf("-schema column %q has type %q: use %s", c.Name, c.Type, strings.Join(structs.ColumnTypes, ", "))
		}
		seen[c.Name] = true
	}
	if strings.HasPrefix(s, "[") {
		return s, nil
	}
	b, err := json.Marshal(cols)
	return string(b), err
}

// badRows renders a quarantine's row count; a version without one has none.
func badRows(v any) string {
	if v == nil {
		return "0"
	}
	return str(v)
}

// quarantineLine says how many bad rows a version quarantined and the first
// of them; "" when it has none.
func quarantineLine(q map[string]any) string {
	if num(q["rows"]) == 0 {
		return ""
	}
	line := str(q["rows"]) + " bad rows quarantined"
	if sample := asMaps(q["sample"]); len(sample) > 0 {
		line += fmt.Sprintf("; first: line %s: %s", str(sample[0]["line"]), str(sample[0]["reason"]))
	}
	return line
}

// parseDatasetRef reads NAME or NAME:VERSION. VERSION is a number from 1 or
// latest; it is "" when not given.
func parseDatasetRef(s string) (name, version string, err error) {
	name, version, hasVersion := strings.Cut(s, ":")
	if name == "" {
		return "", "", fmt.Errorf("dataset %q has no name: give NAME or NAME:VERSION", s)
	}
	if !hasVersion || version == "latest" {
		return name, version, nil
	}
	if n, err := strconv.ParseUint(version, 10, 64); err != nil || n == 0 {
		return "", "", fmt.Errorf("dataset %q: the version after ':' must be a number from 1, or latest", s)
	}
	return name, version, nil
}

// datasetVersionPath is the path of a version; no version is the latest.
func datasetVersionPath(name, version string) string {
	if version == "" {
		version = "latest"
	}
	return "/v1/datasets/" + url.PathEscape(name) + "/versions/" + url.PathEscape(version)
}

func datasetsListCommand() *command {
	usage := "Usage: kiln datasets list [flags]\n\n  Lists datasets with their latest version." + datasetsConnUsage
	return &command{synopsis: "List datasets", help: usage, run: func(args []string) int {
		fs, cf := newClientFlags("datasets list")
		c, err := connect(fs, cf, args, 0, usage)
		if err != nil {
			return fail(err)
		}
		return printList(c, cf, "/v1/datasets", []string{"NAME", "LATEST", "UPDATED"}, func(d map[string]any) []string {
			return []string{str(d["name"]), str(d["latest_version"]), str(d["updated_at"])}
		})
	}}
}

func datasetsVersionsCommand() *command {
	usage := "Usage: kiln datasets versions [flags] NAME\n\n  Lists the versions of a dataset with their format, rows and bad rows." + datasetsConnUsage
	return &command{synopsis: "List a dataset's versions", help: usage, run: func(args []string) int {
		fs, cf := newClientFlags("datasets versions")
		c, err := connect(fs, cf, args, 1, usage)
		if err != nil {
			return fail(err)
		}
		return printList(c, cf, "/v1/datasets/"+url.PathEscape(fs.Arg(0))+"/versions",
			[]string{"VERSION", "FORMAT", "ROWS", "BAD_ROWS", "COLUMNS", "CREATED"}, func(v map[string]any) []string {
				return []string{
					str(v["version"]), str(v["format"]), str(v["rows"]), badRows(v["bad_rows"]),
					strconv.Itoa(len(asMaps(v["columns"]))), str(v["created_at"]),
				}
			})
	}}
}

func datasetsGetCommand() *command {
	usage := `Usage: kiln datasets get [flags] NAME[:VERSION]

  Shows a dataset version (the latest when VERSION is left out): its format,
  size and rows, then each column's type and statistics. Numeric columns
  show their range, mean and standard deviation; the others their three most
  frequent values as value(count), ~ marking an upper bound.` + datasetsConnUsage
	return &command{synopsis: "Show a dataset version's columns and statistics", help: usage, run: func(args []string) int {
		fs, cf := newClientFlags("datasets get")
		c, err := connect(fs, cf, args, 1, usage)
		if err != nil {
			return fail(err)
		}
		name, version, err := parseDatasetRef(fs.Arg(0))
		if err != nil {
			return fail(err)
		}
		var v map[string]any
		if err := c.do("GET", datasetVersionPath(name, version), nil, &v); err != nil {
			return fail(err)
		}
		if cf.format == "json" {
			printJSON(v)
			return 0
		}
		quarantine, _ := v["quarantine"].(map[string]any)
		fmt.Printf("Dataset:   %s:%s\n", str(v["dataset"]), str(v["version"]))
		fmt.Printf("Format:    %s (%s)\n", str(v["format"]), str(v["mode"]))
		fmt.Printf("Rows:      %s\n", str(v["rows"]))
		fmt.Printf("Bad rows:  %s\n", badRows(quarantine["rows"]))
		fmt.Printf("Size:      %s\n", formatBytes(v["size"]))
		fmt.Printf("Digest:    %s\n", str(v["digest"]))
		fmt.Printf("Holders:   %s\n", dash(strings.Join(stringsOf(v["holders"]), ",")))
		fmt.Printf("Created:   %s\n", str(v["created_at"]))
		if line := quarantineLine(quarantine); line != "" {
			fmt.Println(line)
		}
		fmt.Println()
		var rows [][]string
		for _, col := range asMaps(v["columns"]) {
			rows = append(rows, columnRow(col))
		}
		printTable([]string{"NAME", "TYPE", "COUNT", "NULLS", "MIN", "MAX", "MEAN", "STD", "TOP"}, rows)
		return 0
	}}
}

// columnRow renders a column's statistics: the range and moments of a
// numeric column, the top values of a categorical one, "-" where there are
// none.
func columnRow(col map[string]any) []string {
	row := []string{tableCell(str(col["name"])), str(col["type"]), "-", "-", "-", "-", "-", "-", "-"}
	if n, ok := col["numeric"].(map[string]any); ok {
		row[2], row[3] = str(n["count"]), str(n["nulls"])
		if num(n["count"]) > 0 {
			for i, k := range []string{"min", "max", "mean", "std"} {
				row[4+i] = strconv.FormatFloat(num(n[k]), 'g', 6, 64)
			}
		}
	}
	if cat, ok := col["categorical"].(map[string]any); ok {
		if _, numeric := col["numeric"]; !numeric {
			row[2], row[3] = str(cat["count"]), str(cat["nulls"])
		}
		row[8] = topValues(cat["top"], 3)
	}
	return row
}

// topValues renders the first k top values as value(count), a count that is
// only an upper bound marked ~, long values cut.
func topValues(v any, k int) string {
	var parts []string
	for _, t := range asMaps(v) {
		if len(parts) == k {
			break
		}
		value := str(t["value"])
		if utf8.RuneCountInString(value) > 24 {
			value = string([]rune(value)[:21]) + "..."
		}
		count := str(t["count"])
		if num(t["error"]) > 0 {
			count = "~" + count
		}
		parts = append(parts, tableCell(value)+"("+count+")")
	}
	return dash(strings.Join(parts, ", "))
}

// tableCell escapes the characters that would break a table's line or its
// alignment.
func tableCell(s string) string {
	return cellEscaper.Replace(s)
}

var cellEscaper = strings.NewReplacer("\t", `\t`, "\n", `\n`, "\r", `\r`)

func datasetsRowsCommand() *command {
	usage := `Usage: kiln datasets rows [flags] NAME[:VERSION]

  Prints the first rows of a dataset version (the latest when VERSION is
  left out), typed by its schema; the node skips bad rows.

  -limit N   how many rows, 1 to 1000 (the node's default is 20)` + datasetsConnUsage
	return &command{synopsis: "Show the first rows of a dataset version", help: usage, run: func(args []string) int {
		fs, cf := newClientFlags("datasets rows")
		limit := fs.Int("limit", 0, "")
		c, err := connect(fs, cf, args, 1, usage)
		if err != nil {
			return fail(err)
		}
		name, version, err := parseDatasetRef(fs.Arg(0))
		if err != nil {
			return fail(err)
		}
		path := datasetVersionPath(name, version) + "/rows"
		if *limit != 0 {
			if *limit < 0 {
				return fail(fmt.Errorf("-limit must be a positive number of rows, not %d", *limit))
			}
			path += "?limit=" + strconv.Itoa(*limit)
		}
		// Raw JSON keeps the cells as the node wrote them: integers beyond
		// 2^53 stay exact.
		var raw json.RawMessage
		if err := c.do("GET", path, nil, &raw); err != nil {
			return fail(err)
		}
		if cf.format == "json" {
			printJSON(raw)
			return 0
		}
		var page struct {
			Columns []string            `json:"columns"`
			Rows    [][]json.RawMessage `json:"rows"`
		}
		if err := json.Unmarshal(raw, &page); err != nil {
			return fail(fmt.Errorf("reading the rows: %w", err))
		}
		headers := make([]string, len(page.Columns))
		for i, col := range page.Columns {
			headers[i] = tableCell(col)
		}
		rows := make([][]string, len(page.Rows))
		for i, r := range page.Rows {
			rows[i] = make([]string, len(r))
			for j, cell := range r {
				rows[i][j] = rowCell(cell)
			}
		}
		printTable(headers, rows)
		return 0
	}}
}

// rowCell renders one JSON cell of a previewed row: a string unquoted, a
// null as "-", numbers and booleans as written.
func rowCell(cell json.RawMessage) string {
	var s string
	switch {
	case string(cell) == "null":
		return "-"
	case json.Unmarshal(cell, &s) == nil:
		return tableCell(s)
	}
	return string(cell)
}

func datasetsDeleteCommand() *command {
	usage := `Usage: kiln datasets delete [flags] NAME[:VERSION]

  Deletes one version of a dataset, or with NAME alone the dataset and all
  its versions. A version that a model version's lineage names is kept
  unless -force is given.

  -force   delete even what a model's lineage still names` + datasetsConnUsage
	return &command{synopsis: "Delete a dataset or one of its versions", help: usage, run: func(args []string) int {
		fs, cf := newClientFlags("datasets delete")
		force := fs.Bool("force", false, "")
		c, err := connect(fs, cf, args, 1, usage)
		if err != nil {
			return fail(err)
		}
		name, version, err := parseDatasetRef(fs.Arg(0))
		if err != nil {
			return fail(err)
		}
		if version == "latest" {
			return fail(fmt.Errorf("delete needs a version number, not latest: give NAME:VERSION, or NAME to delete the whole dataset"))
		}
		path, what := "/v1/datasets/"+url.PathEscape(name), "dataset "+name
		if version != "" {
			path, what = datasetVersionPath(name, version), "version "+version+" of dataset "+name
		}
		if *force {
			path += "?force=true"
		}
		if err := c.do("DELETE", path, nil, nil); err != nil {
			var ae *apiError
			if errors.As(err, &ae) && ae.Status == http.StatusConflict && !*force {
				err = fmt.Errorf("%w\nGive -force to delete it anyway", err)
			}
			return fail(err)
		}
		if cf.format == "json" {
			printJSON(map[string]string{"deleted": fs.Arg(0)})
			return 0
		}
		fmt.Printf("Deleted %s\n", what)
		return 0
	}}
}
