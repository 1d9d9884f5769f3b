package main

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// jsonOutput is how --output json encodes a response: the canonical
// protobuf JSON mapping, with false, zero and empty fields written out so
// that scripts can read "allowed": false.
var jsonOutput = protojson.MarshalOptions{EmitDefaultValues: true}

// json reports whether the response is to be printed as JSON.
func (c *cli) json() bool { return c.output == "json" }

// printJSON prints m with jsonOutput, one field per line. protojson's own
// multiline form varies its spacing from build to build on purpose; indenting
// the compact form with encoding/json gives output that diffs cleanly.
func (c *cli) printJSON(m proto.Message) error {
	b, err := jsonOutput.Marshal(m)
	if err != nil {
		return fmt.Errorf("encode response: %w", err)
	}
	var out bytes.Buffer
	if err := json.Indent(&out, b, "", "  "); err != nil {
		return fmt.Errorf("encode response: %w", err)
	}
	c.out.Write(out.Bytes())
	c.out.WriteByte('\n')
	return nil
}

// table is a text table with aligned columns, written to w on flush.
type table struct {
	w    *strings.Builder
	rows [][]string
}

// newTable starts a table on w with the given column headers.
func newTable(w *strings.Builder, headers ...string) *table {
	return &table{w: w, rows: [][]string{headers}}
}

// row adds one row; empty cells print as "-".
func (t *table) row(cells ...string) {
	for i, c := range cells {
		if c == "" {
			cells[i] = "-"
		}
	}
	t.rows = append(t.rows, cells)
}

// flush writes the table out, each column as wide as its widest cell and
// two spaces apart; a table without rows says so under its headers.
func (t *table) flush() {
	if len(t.rows) == 1 {
		defer t.w.WriteString("(none)\n")
	}
	var widths []int
	for _, r := range t.rows {
		for i, c := range r {
			if i == len(widths) {
				widths = append(widths, 0)
			}
			widths[i] = max(widths[i], utf8.RuneCountInString(c))
		}
	}
	for _, r := range t.rows {
		for i, c := range r {
			t.w.WriteString(c)
			if i < len(r)-1 {
				t.w.WriteString(strings.Repeat(" ", widths[i]-utf8.RuneCountInString(c)+2))
			}
		}
		t.w.WriteByte('\n')
	}
}

// printRevision ends a text answer with the policy revision it was read at.
func (c *cli) printRevision(rev int64) {
	fmt.Fprintf(&c.out, "revision %d\n", rev)
}

// enumName turns an enum value name into the word people type and read:
// FIELD_STATE_READ_ONLY with prefix FIELD_STATE_ becomes read_only.
func enumName(name, prefix string) string {
	return strings.ToLower(strings.TrimPrefix(name, prefix))
}

// timeText prints a timestamp in UTC, RFC 3339; unset prints as "".
func timeText(ts *timestamppb.Timestamp) string {
	if ts == nil {
		return ""
	}
	return ts.AsTime().UTC().Format(time.RFC3339)
}

// writeCSV writes rows as CSV, each cell made safe for spreadsheets
// (csvText).
func writeCSV(w io.Writer, rows [][]string) error {
	cw := csv.NewWriter(w)
	for _, row := range rows {
		safe := make([]string, len(row))
		for i, cell := range row {
			safe[i] = csvText(cell)
		}
		if err := cw.Write(safe); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

// csvText returns a cell that a spreadsheet shows as the text it holds: one
// beginning with '=', '+', '-', '@', a tab or a carriage return would be
// read as a formula (a comment "=HYPERLINK(...)" runs when the file is
// opened), so it gets a leading single quote, as OWASP's guidance on CSV
// injection says.
func csvText(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}

// list joins ids for a table cell.
func list(ids []string) string { return strings.Join(ids, ",") }

// printError writes err on w for people. A usage error names the help to
// read. A gRPC status prints as its canonical code and message, then the
// google.rpc.ErrorInfo reason and metadata (such as the offending request
// field). A help request and a DENY print nothing.
func printError(w *strings.Builder, err error) {
	var usage *usageError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp), errors.Is(err, errDenied):
		return
	case errors.As(err, &usage):
		help := "authzctl -h"
		if usage.cmd != "" {
			help = "authzctl " + usage.cmd + " -h"
		}
		fmt.Fprintf(w, "authzctl: %s\nRun '%s' for usage.\n", usage.msg, help)
		return
	}
	st, ok := status.FromError(err)
	if !ok {
		fmt.Fprintf(w, "authzctl: %v\n", err)
		return
	}
	fmt.Fprintf(w, "authzctl: %s: %s\n", code.Code(st.Code()).String(), st.Message())
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			fmt.Fprintf(w, "  reason: %s\n", info.GetReason())
			meta := info.GetMetadata()
			for _, k := range slices.Sorted(maps.Keys(meta)) {
				fmt.Fprintf(w, "  %s: %s\n", k, meta[k])
			}
		}
	}
}

// eachPage calls page with each page's token in turn, the first one empty,
// until page returns no next token or an error: a listing read whole.
func eachPage(page func(token string) (next string, err error)) error {
	token := ""
	for {
		next, err := page(token)
		if err != nil || next == "" {
			return err
		}
		token = next
	}
}
