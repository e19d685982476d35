package engine

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/expr-lang/expr/file"
	"github.com/expr-lang/expr/vm"
)

// Evaluator applies one mapping to records. It holds an expr VM and is not safe
// for concurrent use; create one per goroutine.
type Evaluator struct {
	m  *Mapping
	vm *vm.VM
}

// MappingResult is a mapped record.
type MappingResult struct {
	// Key is the entity key: the key expression stringified, else the input's id.
	Key string
	// Record is the mapped output (nil when Skipped).
	Record map[string]any
	// Skipped is true when the filter returned false.
	Skipped bool
}

// MappingError is a per-record expression or cast failure. It names the mapping,
// the field ("key", "filter" or a field path) and the record key.
type MappingError struct {
	Mapping string
	Field   string
	Key     string
	Err     error
}

func (e *MappingError) Error() string {
	rec := ""
	if e.Key != "" {
		rec = fmt.Sprintf(", record %q", e.Key)
	}
	return fmt.Sprintf("mapping %q, %s%s: %v", e.Mapping, e.Field, rec, e.Err)
}

func (e *MappingError) Unwrap() error { return e.Err }

// NewEvaluator returns an evaluator for m with its own VM.
func (m *Mapping) NewEvaluator() *Evaluator {
	return &Evaluator{m: m, vm: new(vm.VM)}
}

// Apply maps one input record. input is not modified.
func (e *Evaluator) Apply(input map[string]any) (MappingResult, error) {
	return e.m.apply(e.vm, input)
}

// run evaluates a compiled expression against env, turning expr's errors (with
// their snippets) into the bare message.
func run(v *vm.VM, ce *compiledExpr, env map[string]any) (any, error) {
	out, err := v.Run(ce.prog, env)
	if err != nil {
		var fe *file.Error
		if errors.As(err, &fe) {
			if fe.Prev != nil {
				return nil, fe.Prev
			}
			return nil, errors.New(fe.Message)
		}
		return nil, err
	}
	return out, nil
}

func (m *Mapping) apply(v *vm.VM, input map[string]any) (MappingResult, error) {
	var res MappingResult
	if input == nil {
		input = map[string]any{}
	}
	if m.key != nil {
		k, err := run(v, m.key, input)
		if err != nil {
			return res, &MappingError{Mapping: m.Name, Field: "key", Err: err}
		}
		res.Key, _ = stringify(k)
	} else if id, ok := input["id"]; ok {
		res.Key, _ = stringify(id)
	}
	if m.filter != nil {
		ok, err := run(v, m.filter, input)
		if err != nil {
			return res, &MappingError{Mapping: m.Name, Field: "filter", Key: res.Key, Err: err}
		}
		switch b := ok.(type) {
		case bool:
			if !b {
				res.Skipped = true
				return res, nil
			}
		case nil:
			res.Skipped = true
			return res, nil
		default:
			return res, &MappingError{Mapping: m.Name, Field: "filter", Key: res.Key,
				Err: fmt.Errorf("the filter must give true or false, got %s", describe(ok))}
		}
	}
	var out map[string]any
	if m.Config != nil && m.Config.PassThrough {
		out = deepCopyMap(input, len(m.fields))
	} else {
		out = make(map[string]any, len(m.fields)+len(m.defaults))
	}
	for i := range m.fields {
		f := &m.fields[i]
		if f.expr == nil {
			continue
		}
		val, err := run(v, f.expr, input)
		if err != nil {
			return res, &MappingError{Mapping: m.Name, Field: fmt.Sprintf("field %q", f.name), Key: res.Key, Err: err}
		}
		if f.cast != "" {
			if val, err = castValue(val, f.cast); err != nil {
				return res, &MappingError{Mapping: m.Name, Field: fmt.Sprintf("field %q", f.name), Key: res.Key, Err: err}
			}
		}
		if x, ok := val.(float64); ok && (math.IsNaN(x) || math.IsInf(x, 0)) {
			// JSON has no NaN or infinity: fail here, on the field, rather
			// than later when the record is hashed or written.
			return res, &MappingError{Mapping: m.Name, Field: fmt.Sprintf("field %q", f.name), Key: res.Key,
				Err: fmt.Errorf("the value is %v, which JSON cannot carry (a division by zero?); guard it, e.g. d != 0 ? n / d : nil", x)}
		}
		if len(f.path) == 1 {
			out[f.path[0]] = val
		} else {
			setPath(out, f.path, val)
		}
	}
	for _, d := range m.defaults {
		if cur, ok := getPath(out, d.path); !ok || cur == nil {
			setPath(out, d.path, d.value)
		}
	}
	for _, u := range m.unset {
		deletePath(out, u)
	}
	res.Record = out
	return res, nil
}

// deepCopyMap copies nested objects (lists are shared: mappings never write into
// lists) so that writing nested output paths never changes the input.
func deepCopyMap(in map[string]any, extra int) map[string]any {
	out := make(map[string]any, len(in)+extra)
	for k, v := range in {
		if mm, ok := v.(map[string]any); ok {
			v = deepCopyMap(mm, 0)
		}
		out[k] = v
	}
	return out
}

// castValue converts a field's value to its declared cast. nil stays nil.
//
//	string  – stringify (integral numbers without fraction, times as RFC 3339)
//	int     – numbers truncated, numeric strings parsed
//	float   – numbers, numeric strings
//	bool    – true/false, yes/no, 1/0, on/off
//	decimal – an exact decimal number (json.Number) from a number or numeric string
//	time    – a time (RFC 3339 or a common layout, or unix seconds) as an RFC 3339 string
func castValue(v any, cast string) (any, error) {
	if v == nil {
		return nil, nil
	}
	switch cast {
	case "", "any":
		return v, nil
	case "string":
		s, _ := stringify(v)
		return s, nil
	case "int":
		i, err := toInt(v)
		if err != nil {
			return nil, fmt.Errorf("cannot cast to int: %w", err)
		}
		return i, nil
	case "float":
		f, err := toFloat(v)
		if err != nil {
			return nil, fmt.Errorf("cannot cast to float: %w", err)
		}
		return f, nil
	case "bool":
		b, err := toBool(v)
		if err != nil {
			return nil, fmt.Errorf("cannot cast to bool: %w", err)
		}
		return b, nil
	case "decimal":
		return toDecimal(v)
	case "time":
		t, err := parseTimeValue(v, "", time.UTC)
		if err != nil {
			return nil, fmt.Errorf("cannot cast to time: %w", err)
		}
		return t.Format(time.RFC3339Nano), nil
	}
	return nil, fmt.Errorf("unknown cast %q", cast)
}

func toDecimal(v any) (any, error) {
	switch x := v.(type) {
	case json.Number:
		return x, nil
	case string:
		s := strings.TrimSpace(x)
		if _, err := strconv.ParseFloat(s, 64); err != nil || !json.Valid([]byte(s)) {
			return nil, fmt.Errorf("cannot cast to decimal: %q is not a decimal number", x)
		}
		return json.Number(s), nil
	}
	f, err := toFloat(v)
	if err != nil {
		return nil, fmt.Errorf("cannot cast to decimal: %w", err)
	}
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return nil, fmt.Errorf("cannot cast to decimal: %v", f)
	}
	return json.Number(strconv.FormatFloat(f, 'f', -1, 64)), nil
}

// lookup implements lookup("table", key, default?).
func (p *Program) lookup(args ...any) (any, error) {
	name, _ := args[0].(string)
	t, ok := p.Config.Tables[name]
	if !ok || t == nil {
		return nil, fmt.Errorf("lookup: unknown table %q", name)
	}
	if k, ok := stringify(args[1]); ok {
		if v, found := t.Values[k]; found {
			return v, nil
		}
	}
	if len(args) > 2 {
		return args[2], nil
	}
	return t.Default, nil
}

// apply implements apply("mapping", objectOrList): the named mapping applied to
// an object, or to each object of a list (elements the filter skips are left out).
func (p *Program) apply(args ...any) (any, error) {
	name, _ := args[0].(string)
	m, ok := p.Mappings[name]
	if !ok {
		return nil, fmt.Errorf("apply: unknown mapping %q", name)
	}
	v := p.vms.Get().(*vm.VM)
	defer p.vms.Put(v)
	switch x := args[1].(type) {
	case nil:
		return nil, nil
	case map[string]any:
		r, err := m.apply(v, x)
		if err != nil || r.Skipped {
			return nil, err
		}
		return r.Record, nil
	}
	list, ok := toList(args[1])
	if !ok {
		return nil, fmt.Errorf("apply: mapping %q needs an object or a list of objects, got %s", name, describe(args[1]))
	}
	out := make([]any, 0, len(list))
	for i, e := range list {
		if e == nil {
			continue
		}
		obj, ok := e.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("apply: mapping %q: element %d is %s, not an object", name, i, describe(e))
		}
		r, err := m.apply(v, obj)
		if err != nil {
			return nil, fmt.Errorf("element %d: %w", i, err)
		}
		if !r.Skipped {
			out = append(out, r.Record)
		}
	}
	return out, nil
}
