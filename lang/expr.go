package lang

import (
	"strings"
	"unicode/utf8"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
)

// SubRange returns the file range of length bytes starting at byte offset of
// e.Source. The position is exact when the string was written in the file
// without escape sequences (the common case, and always for plain heredocs);
// otherwise, or when the offsets are out of bounds, it is e.Range.
func (e *Expr) SubRange(offset, length int) hcl.Range {
	if e == nil {
		return hcl.Range{}
	}
	if e.start == nil || offset < 0 || length < 0 || offset+length > len(e.Source) {
		return e.Range
	}
	if length == 0 && offset < len(e.Source) {
		length = 1
	}
	return hcl.Range{
		Filename: e.Range.Filename,
		Start:    e.posAt(offset),
		End:      e.posAt(offset + length),
	}
}

// Exact reports whether SubRange maps offsets exactly.
func (e *Expr) Exact() bool { return e != nil && e.start != nil }

func (e *Expr) posAt(offset int) hcl.Pos {
	before := e.Source[:offset]
	p := hcl.Pos{Line: e.start.Line, Column: e.start.Column, Byte: e.start.Byte + offset}
	if nl := strings.LastIndexByte(before, '\n'); nl >= 0 {
		p.Line += strings.Count(before, "\n")
		p.Column = 1 + utf8.RuneCountInString(before[nl+1:])
	} else {
		p.Column += utf8.RuneCountInString(before)
	}
	return p
}

func (e *Expr) String() string {
	if e == nil {
		return ""
	}
	return e.Source
}

const exprHelp = `It is a per-record expression, evaluated by ferry for every record, and must be written as a plain string or heredoc containing the expression itself, e.g. "trim(title)" or "\"/items/\" + sku". HCL interpolation (${...}), template directives (%{...}), references and function calls are not evaluated here. To write a literal "${" or "%{" inside the expression, escape it as "$${" or "%%{".`

// decodeExpr turns an attribute expression into a per-record Expr. what names the
// attribute for messages ("mapping key", "field \"sku\"").
func (l *loader) decodeExpr(expr hcl.Expression, what string) (*Expr, hcl.Diagnostics) {
	rng := expr.Range()
	if _, native := expr.(hclsyntax.Expression); native {
		var parts []hclsyntax.Expression
		switch te := expr.(type) {
		case *hclsyntax.TemplateExpr:
			parts = te.Parts
		case *hclsyntax.TemplateWrapExpr:
			return nil, interpolationDiag(what, te.Wrapped.Range(), rng)
		default:
			return nil, hcl.Diagnostics{{
				Severity: hcl.DiagError,
				Summary:  "Expression must be a string",
				Detail:   "The " + what + " must be written as a string. " + exprHelp,
				Subject:  rng.Ptr(),
			}}
		}
		var sb strings.Builder
		for _, p := range parts {
			lit, ok := p.(*hclsyntax.LiteralValueExpr)
			if !ok || lit.Val.Type() != cty.String || lit.Val.IsNull() {
				return nil, interpolationDiag(what, p.Range(), rng)
			}
			sb.WriteString(lit.Val.AsString())
		}
		e := &Expr{Source: sb.String(), Range: rng}
		if len(parts) == 0 {
			if rng.End.Byte-rng.Start.Byte == 2 { // ""
				e.start = &hcl.Pos{Line: rng.Start.Line, Column: rng.Start.Column + 1, Byte: rng.Start.Byte + 1}
			}
			return e, nil
		}
		first := parts[0].Range()
		last := parts[len(parts)-1].Range()
		if raw, ok := l.fileSlice(rng.Filename, first.Start.Byte, last.End.Byte); ok && raw == e.Source {
			st := first.Start
			e.start = &st
		}
		return e, nil
	}

	// JSON syntax: strings are templates in HCL's JSON syntax too, so they get the
	// same treatment as native quoted strings.
	v, diags := expr.Value(nil)
	if diags.HasErrors() || v.IsNull() || !v.IsKnown() || v.Type() != cty.String {
		return nil, hcl.Diagnostics{{
			Severity: hcl.DiagError,
			Summary:  "Expression must be a string",
			Detail:   "The " + what + " must be written as a string. " + exprHelp,
			Subject:  rng.Ptr(),
		}}
	}
	raw := v.AsString()
	tmpl, tdiags := hclsyntax.ParseTemplate([]byte(raw), rng.Filename, hcl.Pos{Line: rng.Start.Line, Column: rng.Start.Column + 1, Byte: rng.Start.Byte + 1})
	if tdiags.HasErrors() {
		return nil, interpolationDiag(what, rng, rng)
	}
	var sb strings.Builder
	ok := true
	switch te := tmpl.(type) {
	case *hclsyntax.TemplateExpr:
		for _, p := range te.Parts {
			lit, isLit := p.(*hclsyntax.LiteralValueExpr)
			if !isLit || lit.Val.Type() != cty.String || lit.Val.IsNull() {
				ok = false
				break
			}
			sb.WriteString(lit.Val.AsString())
		}
	default:
		ok = false
	}
	if !ok {
		return nil, interpolationDiag(what, rng, rng)
	}
	e := &Expr{Source: sb.String(), Range: rng}
	if rng.End.Byte-rng.Start.Byte >= 2 {
		if inner, fok := l.fileSlice(rng.Filename, rng.Start.Byte+1, rng.End.Byte-1); fok && inner == e.Source {
			e.start = &hcl.Pos{Line: rng.Start.Line, Column: rng.Start.Column + 1, Byte: rng.Start.Byte + 1}
		}
	}
	return e, nil
}

func interpolationDiag(what string, subject, context hcl.Range) hcl.Diagnostics {
	return hcl.Diagnostics{{
		Severity: hcl.DiagError,
		Summary:  "Interpolation in per-record expression",
		Detail:   "The " + what + " cannot use HCL interpolation or template directives. " + exprHelp,
		Subject:  subject.Ptr(),
		Context:  context.Ptr(),
	}}
}

// fileSlice returns the source bytes [start, end) of a loaded file.
func (l *loader) fileSlice(filename string, start, end int) (string, bool) {
	if l == nil || l.parser == nil {
		return "", false
	}
	f := l.parser.Files()[filename]
	if f == nil || start < 0 || end < start || end > len(f.Bytes) {
		return "", false
	}
	return string(f.Bytes[start:end]), true
}
