package main

import (
	"fmt"
	"net/url"
	"sort"
	"strings"
)

// modelRow renders a model for tables.
func modelRow(m map[string]any) []string {
	tags, _ := m["tags"].(map[string]any)
	keys := make([]string, 0, len(tags))
	for k := range tags {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var kv []string
	for _, k := range keys {
		v := str(tags[k])
		if len(v) > 24 {
			v = v[:21] + "..."
		}
		kv = append(kv, k+"="+v)
	}
	return []string{str(m["name"]), str(m["owner"]), strings.Join(kv, ","), str(m["updated_at"]), str(m["description"])}
}

var modelHeaders = []string{"NAME", "OWNER", "TAGS", "UPDATED", "DESCRIPTION"}

// tagFlags parses repeated KEY=VALUE (set) or KEY= / -untag KEY (delete).
func parseTags(pairs []string) (map[string]*string, error) {
	tags := map[string]*string{}
	for _, p := range pairs {
		k, v, ok := strings.Cut(p, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("tag %q must be KEY=VALUE", p)
		}
		tags[k] = &v
	}
	return tags, nil
}

func modelsCreateCommand() *command {
	usage := `Usage: kiln models create [flags] NAME

  Registers a model.

  -description TEXT   what the model is for
  -owner WHO          owning team or person
  -tag KEY=VALUE      a tag (repeatable)`
	return &command{synopsis: "Register a model", help: usage, run: func(args []string) int {
		fs, cf := newClientFlags("models create")
		desc := fs.String("description", "", "")
		owner := fs.String("owner", "", "")
		var tags stringList
		fs.Var(&tags, "tag", "")
		c, err := connect(fs, cf, args, 1, usage)
		if err != nil {
			return fail(err)
		}
		t, err := parseTags(tags)
		if err != nil {
			return fail(err)
		}
		plain := map[string]string{}
		for k, v := range t {
			plain[k] = *v
		}
		var out map[string]any
		body := map[string]any{"name": fs.Arg(0), "description": *desc, "owner": *owner, "tags": plain}
		if err := c.do("POST", "/v1/models", body, &out); err != nil {
			return fail(err)
		}
		if cf.format == "json" {
			printJSON(out)
		} else {
			fmt.Printf("Created model %s\n", fs.Arg(0))
		}
		return 0
	}}
}

func modelsListCommand() *command {
	usage := "Usage: kiln models list [-address ADDR] [-format table|json] [-consistency stale|default|consistent]"
	return &command{synopsis: "List models", help: usage, run: func(args []string) int {
		fs, cf := newClientFlags("models list")
		consistency := fs.String("consistency", "", "")
		c, err := connect(fs, cf, args, 0, usage)
		if err != nil {
			return fail(err)
		}
		var all []map[string]any
		cursor := ""
		for {
			q := url.Values{"limit": {"1000"}}
			if cursor != "" {
				q.Set("cursor", cursor)
			}
			if *consistency != "" {
				q.Set("consistency", *consistency)
			}
			var page map[string]any
			if err := c.do("GET", "/v1/models?"+q.Encode(), nil, &page); err != nil {
				return fail(err)
			}
			all = append(all, items(page)...)
			cursor = str(page["next_cursor"])
			if cursor == "" {
				break
			}
		}
		if cf.format == "json" {
			printJSON(map[string]any{"items": all})
			return 0
		}
		var rows [][]string
		for _, m := range all {
			rows = append(rows, modelRow(m))
		}
		printTable(modelHeaders, rows)
		return 0
	}}
}

func modelsGetCommand() *command {
	usage := "Usage: kiln models get [-address ADDR] [-format table|json] [-consistency C] NAME"
	return &command{synopsis: "Show a model", help: usage, run: func(args []string) int {
		fs, cf := newClientFlags("models get")
		consistency := fs.String("consistency", "", "")
		c, err := connect(fs, cf, args, 1, usage)
		if err != nil {
			return fail(err)
		}
		path := "/v1/models/" + url.PathEscape(fs.Arg(0))
		if *consistency != "" {
			path += "?consistency=" + url.QueryEscape(*consistency)
		}
		var m map[string]any
		if err := c.do("GET", path, nil, &m); err != nil {
			return fail(err)
		}
		if cf.format == "json" {
			printJSON(m)
			return 0
		}
		printTable(modelHeaders, [][]string{modelRow(m)})
		return 0
	}}
}

func modelsTagCommand() *command {
	usage := `Usage: kiln models tag [flags] NAME KEY=VALUE... [-untag KEY]...

  Sets tags on a model (merging with the ones it has) and removes -untag keys.`
	return &command{synopsis: "Set or remove tags on a model", help: usage, run: func(args []string) int {
		fs, cf := newClientFlags("models tag")
		var untag stringList
		fs.Var(&untag, "untag", "")
		c, err := connect(fs, cf, args, -1, usage)
		if err != nil {
			return fail(err)
		}
		if fs.NArg() == 1 && len(untag) == 0 {
			return fail(fmt.Errorf("expected at least one KEY=VALUE or -untag KEY\n%s", usage))
		}
		tags, err := parseTags(fs.Args()[1:])
		if err != nil {
			return fail(err)
		}
		for _, k := range untag {
			tags[k] = nil
		}
		var m map[string]any
		if err := c.do("PATCH", "/v1/models/"+url.PathEscape(fs.Arg(0)), map[string]any{"tags": tags}, &m); err != nil {
			return fail(err)
		}
		if cf.format == "json" {
			printJSON(m)
			return 0
		}
		printTable(modelHeaders, [][]string{modelRow(m)})
		return 0
	}}
}

func modelsDeleteCommand() *command {
	usage := "Usage: kiln models delete [-address ADDR] NAME"
	return &command{synopsis: "Delete a model", help: usage, run: func(args []string) int {
		fs, cf := newClientFlags("models delete")
		c, err := connect(fs, cf, args, 1, usage)
		if err != nil {
			return fail(err)
		}
		if err := c.do("DELETE", "/v1/models/"+url.PathEscape(fs.Arg(0)), nil, nil); err != nil {
			return fail(err)
		}
		fmt.Printf("Deleted model %s\n", fs.Arg(0))
		return 0
	}}
}
