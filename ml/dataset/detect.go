package dataset

import (
	"bytes"
	"strconv"
)

// parquetMagic opens (and closes) every Parquet file.
var parquetMagic = []byte("PAR1")

// Detect guesses a dataset file's format from its first bytes (a few KiB
// are plenty; the last line may be cut). The rules, in order:
//
//   - empty or blank input, or any NUL byte: cannot tell (false) — except
//     that a file opening with Parquet's magic "PAR1" is Parquet;
//   - a UTF-8 byte-order mark is skipped; the first line is the first one
//     that is not blank;
//   - a first line with a control character other than tab or CR is binary:
//     cannot tell;
//   - a first line opening with '{' is JSONL; with '[', a JSON document,
//     which is not read: cannot tell;
//   - a first line that is not a '#' comment, or else the first line after
//     the comments, of the form "<number> <index>:<number> ..." (at least one
//     index:value pair; qid:N allowed) is LibSVM;
//   - otherwise the first line is a header: more tabs than commas is TSV,
//     anything else (commas, or a single column) CSV.
//
// Detect only guesses: Scan still checks the whole file.
func Detect(head []byte) (Format, bool) {
	if bytes.HasPrefix(head, parquetMagic) {
		return Parquet, true
	}
	if bytes.IndexByte(head, 0) >= 0 {
		return "", false
	}
	head = bytes.TrimPrefix(head, utf8BOM)
	first, rest, ended := nextLine(head)
	if first == nil {
		return "", false
	}
	for _, b := range first {
		if (b < 0x20 && b != '\t' && b != '\r') || b == 0x7f {
			return "", false
		}
	}
	switch bytes.TrimSpace(first)[0] {
	case '{':
		return JSONL, true
	case '[':
		return "", false
	}
	line, lineEnded := first, ended
	for line != nil && bytes.TrimSpace(line)[0] == '#' {
		line, rest, lineEnded = nextLine(rest)
	}
	if line != nil && libsvmLine(line, lineEnded) {
		return LibSVM, true
	}
	if bytes.Count(first, []byte{'\t'}) > bytes.Count(first, []byte{','}) {
		return TSV, true
	}
	return CSV, true
}

// nextLine returns the first line of b that is not blank, without its
// newline (nil if there is none), what follows it, and whether its newline
// was seen (else b may have cut it short).
func nextLine(b []byte) (line, rest []byte, ended bool) {
	for len(b) > 0 {
		line, rest, ended = bytes.Cut(b, []byte{'\n'})
		if len(bytes.TrimSpace(line)) > 0 {
			return line, rest, ended
		}
		b = rest
	}
	return nil, nil, false
}

// libsvmLine reports whether line reads as "label index:value ...". When the
// line may be cut short (!ended), its last token is not judged, unless it is
// the only index:value pair.
func libsvmLine(line []byte, ended bool) bool {
	tokens := bytes.Fields(line)
	if !ended && len(tokens) > 2 {
		tokens = tokens[:len(tokens)-1]
	}
	if len(tokens) < 2 || !isNumber(tokens[0]) {
		return false
	}
	pairs := 0
	for _, t := range tokens[1:] {
		k, v, ok := bytes.Cut(t, []byte{':'})
		if !ok || !isNumber(v) {
			return false
		}
		if string(k) == "qid" {
			continue
		}
		if i, err := strconv.ParseInt(string(k), 10, 64); err != nil || i < 0 {
			return false
		}
		pairs++
	}
	return pairs > 0
}

func isNumber(b []byte) bool {
	v := parse(string(b))
	return v.Kind == Int || v.Kind == Float
}
