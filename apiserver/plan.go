package apiserver

import (
	"github.com/ferryhq/ferry/engine"
	"github.com/ferryhq/ferry/lang"
)

// planOf is what applying after on top of before (nil: nothing applied)
// changes, bound by its hash to the prior revision and the exact files.
func planOf(before, after *lang.Config, prior int, files map[string]string) *engine.Plan {
	p := engine.Diff(before, after)
	p.PriorRevision = prior
	p.Hash = engine.PlanHash(prior, filesBytes(files))
	return p
}
