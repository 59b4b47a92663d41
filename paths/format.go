package paths

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// Formats are the table's output forms.
var Formats = []string{"text", "md", "csv", "json"}

var header = []string{"Function", "Port", "Source", "Target", "Description", "Required"}

func row(p Path) []string {
	req := "required"
	if !p.Required {
		req = "optional"
	}
	return []string{p.Function, p.Port(), p.Source(), p.Target(), p.Description, req}
}

// Write prints the table in one of Formats.
func Write(w io.Writer, t []Path, format string) error {
	switch format {
	case "text":
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, strings.Join(header, "\t"))
		for _, p := range t {
			fmt.Fprintln(tw, strings.Join(row(p), "\t"))
		}
		return tw.Flush()
	case "md":
		fmt.Fprintf(w, "| %s |\n|%s\n", strings.Join(header, " | "), strings.Repeat("---|", len(header)))
		for _, p := range t {
			cells := row(p)
			for i, c := range cells {
				cells[i] = strings.ReplaceAll(c, "|", `\|`)
			}
			fmt.Fprintf(w, "| %s |\n", strings.Join(cells, " | "))
		}
		return nil
	case "csv":
		cw := csv.NewWriter(w)
		cw.Write(header)
		for _, p := range t {
			cw.Write(row(p))
		}
		cw.Flush()
		return cw.Error()
	case "json":
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		if t == nil {
			t = []Path{}
		}
		return enc.Encode(t)
	}
	return fmt.Errorf("unknown format %q (text, md, csv or json)", format)
}
