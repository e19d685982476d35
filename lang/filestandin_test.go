package lang

import (
	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/zclconf/go-cty/cty"

	"github.com/ferryhq/ferry/connectors"
)

// lang cannot import the real file connector (connectors/file imports nothing
// of ferry's, but lang's tests must not depend on a connector package), so this
// stand-in declares the same schema. engine's corpus test uses the real one.
func init() {
	connectors.Register(&connectors.Connector{
		Type: "file",
		Connection: hcldec.ObjectSpec{
			"path":   &hcldec.AttrSpec{Name: "path", Type: cty.String},
			"format": &hcldec.AttrSpec{Name: "format", Type: cty.String},
		},
		Source: hcldec.ObjectSpec{
			"path":    &hcldec.AttrSpec{Name: "path", Type: cty.String, Required: true},
			"format":  &hcldec.AttrSpec{Name: "format", Type: cty.String},
			"records": &hcldec.AttrSpec{Name: "records", Type: cty.String},
		},
		Target: hcldec.ObjectSpec{
			"path":   &hcldec.AttrSpec{Name: "path", Type: cty.String, Required: true},
			"format": &hcldec.AttrSpec{Name: "format", Type: cty.String},
		},
	})
}
