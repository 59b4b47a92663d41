package paths

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"text/tabwriter"
)

func sortResults(rs []Result, order map[string]int) {
	sort.SliceStable(rs, func(i, j int) bool {
		a, b := order[rs[i].Path.Function+rs[i].Path.Proto+rs[i].Path.PortText], order[rs[j].Path.Function+rs[j].Path.Proto+rs[j].Path.PortText]
		if a != b {
			return a < b
		}
		return rs[i].Target < rs[j].Target
	})
}

// WriteResults prints check results as text or json, and reports whether
// every required path is ok.
func WriteResults(w io.Writer, rs []Result, format string) (bool, error) {
	ok := true
	for _, r := range rs {
		if r.Path.Required && r.Outcome != OK && r.Outcome != Skipped {
			ok = false
		}
	}
	if format == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		if rs == nil {
			rs = []Result{}
		}
		return ok, enc.Encode(rs)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "Function\tPort\tTarget\tResult\tDetail")
	for _, r := range rs {
		detail := r.Detail
		if r.Opening != "" {
			detail = "missing opening: " + r.Opening
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.Path.Function, r.Path.Port(), r.Target, r.Outcome, detail)
	}
	return ok, tw.Flush()
}
