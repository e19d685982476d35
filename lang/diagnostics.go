package lang

import (
	"encoding/json"
	"io"

	"github.com/hashicorp/hcl/v2"
)

// WriteDiagnostics writes diagnostics as text with source snippets, the way
// Terraform does. files are the parsed files (Config.Files) used for snippets.
func WriteDiagnostics(w io.Writer, files map[string]*hcl.File, diags hcl.Diagnostics, color bool) error {
	if files == nil {
		files = map[string]*hcl.File{}
	}
	wr := hcl.NewDiagnosticTextWriter(w, files, 100, color)
	return wr.WriteDiagnostics(diags)
}

// JSON shapes of DiagnosticsJSON.
type (
	jsonPos struct {
		Line   int `json:"line"`
		Column int `json:"column"`
	}
	jsonRange struct {
		Filename string  `json:"filename"`
		Start    jsonPos `json:"start"`
		End      jsonPos `json:"end"`
	}
	jsonDiagnostic struct {
		Severity string     `json:"severity"`
		Summary  string     `json:"summary"`
		Detail   string     `json:"detail"`
		Range    *jsonRange `json:"range,omitempty"`
	}
	jsonDiagnostics struct {
		Valid       bool             `json:"valid"`
		Diagnostics []jsonDiagnostic `json:"diagnostics"`
	}
)

// DiagnosticsJSON renders diagnostics as
//
//	{"valid":bool,"diagnostics":[{"severity":"error"|"warning","summary","detail",
//	  "range":{"filename","start":{"line","column"},"end":{"line","column"}}}]}
//
// valid is true when there is no error; range is omitted when unknown.
func DiagnosticsJSON(diags hcl.Diagnostics) ([]byte, error) {
	out := jsonDiagnostics{Valid: !diags.HasErrors(), Diagnostics: make([]jsonDiagnostic, 0, len(diags))}
	for _, d := range diags {
		jd := jsonDiagnostic{Severity: "error", Summary: d.Summary, Detail: d.Detail}
		if d.Severity == hcl.DiagWarning {
			jd.Severity = "warning"
		}
		if d.Subject != nil {
			r := d.Subject
			jd.Range = &jsonRange{
				Filename: r.Filename,
				Start:    jsonPos{Line: r.Start.Line, Column: r.Start.Column},
				End:      jsonPos{Line: r.End.Line, Column: r.End.Column},
			}
		}
		out.Diagnostics = append(out.Diagnostics, jd)
	}
	return json.Marshal(out)
}
