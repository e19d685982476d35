package engine

import (
	"bufio"
	"fmt"
	"io"
	"strings"
)

// Graph writes the stage graph of one integration ("" = all, one cluster each)
// as Graphviz DOT: ingest → normalize → transform → execute → finalize, each node
// labelled with what the stage does for that integration.
func (p *Program) Graph(w io.Writer, integration string) error {
	names := sortedKeys(p.Pipelines)
	if integration != "" {
		if _, ok := p.Pipelines[integration]; !ok {
			return fmt.Errorf("%w %q", ErrUnknownIntegration, integration)
		}
		names = []string{integration}
	}
	bw := bufio.NewWriter(w)
	fmt.Fprintln(bw, "digraph ferry {")
	fmt.Fprintln(bw, "  rankdir=LR;")
	fmt.Fprintln(bw, `  node [shape=box, style="rounded", fontname="Helvetica"];`)
	for _, name := range names {
		pl := p.Pipelines[name]
		indent := "  "
		if integration == "" {
			fmt.Fprintf(bw, "  subgraph %s {\n", dotID("cluster_"+name))
			fmt.Fprintf(bw, "    label=%s;\n", dotString("integration "+name))
			indent = "    "
		}
		for _, st := range Stages {
			fmt.Fprintf(bw, "%s%s [label=%s];\n", indent, dotID(nodeID(name, st)), dotString(stageLabel(pl, st)))
		}
		for j := 1; j < len(Stages); j++ {
			fmt.Fprintf(bw, "%s%s -> %s;\n", indent, dotID(nodeID(name, Stages[j-1])), dotID(nodeID(name, Stages[j])))
		}
		if integration == "" {
			fmt.Fprintln(bw, "  }")
		}
	}
	fmt.Fprintln(bw, "}")
	return bw.Flush()
}

func nodeID(integration string, st Stage) string { return integration + "." + string(st) }

func stageLabel(pl *Pipeline, st Stage) string {
	in := pl.Integration
	lines := []string{string(st)}
	switch st {
	case StageIngest:
		if s := in.Source; s != nil {
			lines = append(lines, "connection: "+p0(s.Connection)+connType(pl, s.Connection))
			if s.Cursor != "" {
				lines = append(lines, "cursor: "+s.Cursor)
			}
		}
	case StageNormalize:
		if n := pl.Normalize; n != nil {
			if len(n.Require) > 0 {
				lines = append(lines, "require: "+strings.Join(n.Require, ", "))
			}
			if n.Trim {
				lines = append(lines, "trim")
			}
			for _, t := range pl.types {
				lines = append(lines, t.name+": "+t.typ)
			}
		} else {
			lines = append(lines, "(none)")
		}
	case StageTransform:
		if m := pl.Mapping; m != nil {
			lines = append(lines, "mapping: "+m.Name)
			if m.filter != nil {
				lines = append(lines, "filter: "+m.filter.src.Source)
			}
			lines = append(lines, fmt.Sprintf("%d fields", len(m.fields)))
			if pl.SkipUnchanged {
				lines = append(lines, "skip unchanged")
			}
		} else {
			lines = append(lines, "(pass through)")
		}
	case StageExecute:
		if t := in.Target; t != nil {
			lines = append(lines, "connection: "+p0(t.Connection)+connType(pl, t.Connection))
		}
		lines = append(lines, "operation: "+string(pl.Operation))
		if pl.path != nil {
			lines = append(lines, "path: "+strings.TrimSpace(pl.path.src.Source))
		}
		lines = append(lines, fmt.Sprintf("batch: %d", pl.BatchSize))
		r := pl.Retry
		lines = append(lines, fmt.Sprintf("retry: %d attempts, %s..%s", r.MaxAttempts, r.Initial, r.Max))
	case StageFinalize:
		if s := in.Source; s != nil && s.Cursor != "" {
			lines = append(lines, "advance cursor "+s.Cursor)
		}
		lines = append(lines, "record outcomes")
	}
	return strings.Join(lines, "\n")
}

func p0(s string) string {
	if s == "" {
		return "?"
	}
	return s
}

func connType(pl *Pipeline, name string) string {
	if c, ok := pl.program.Config.Connections[name]; ok && c != nil && c.Type != "" {
		return " (" + c.Type + ")"
	}
	return ""
}

// dotString quotes s for DOT; newlines become centred line breaks.
func dotString(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)
	return `"` + r.Replace(s) + `"`
}

func dotID(s string) string { return dotString(s) }
