package lang

import (
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/hashicorp/hcl/v2/hclwrite"
	"github.com/hashicorp/hcl/v2/json"
)

// Format returns src in canonical HCL formatting. A file with syntax errors gets
// diagnostics and no output, so it is never rewritten. JSON files (.json) are
// only validated and returned unchanged.
func Format(src []byte, filename string) ([]byte, hcl.Diagnostics) {
	if strings.HasSuffix(filename, ".json") {
		if _, diags := json.Parse(src, filename); diags.HasErrors() {
			return nil, diags
		}
		return src, nil
	}
	if _, diags := hclsyntax.ParseConfig(src, filename, hcl.InitialPos); diags.HasErrors() {
		return nil, diags
	}
	return hclwrite.Format(src), nil
}
