package engine

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/expr-lang/expr/vm"

	"github.com/ferryhq/ferry/connectors"
)

// Worker runs records through one pipeline's normalize and transform stages.
// It holds an expr VM that is reused for every record; it is not safe for
// concurrent use, so create one per goroutine with NewWorker.
type Worker struct {
	p  *Pipeline
	vm *vm.VM
}

// NewWorker returns a worker for p.
func (p *Pipeline) NewWorker() *Worker {
	return &Worker{p: p, vm: new(vm.VM)}
}

// Pipeline returns the worker's pipeline.
func (w *Worker) Pipeline() *Pipeline { return w.p }

// Prepare decodes rec (when the source gave Raw JSON), normalizes and transforms
// it and builds the target write. It is pure compute: no I/O, no clock. rec.Data
// is normalized in place; rec.Key is set to the entity key.
func (w *Worker) Prepare(rec *connectors.Record) Prepared {
	p := w.p
	if err := rec.Decode(); err != nil {
		return Prepared{Outcome: Failed, Key: rec.Key, Stage: StageIngest, Err: connectors.Permanent(err)}
	}
	if err := p.normalize(rec.Data); err != nil {
		key := rec.Key
		if key == "" {
			key, _ = stringify(rec.Data["id"])
		}
		return Prepared{Outcome: Failed, Key: key, Stage: StageNormalize, Err: connectors.Permanent(err)}
	}
	var out map[string]any
	key := rec.Key
	if p.Mapping != nil {
		res, err := p.Mapping.apply(w.vm, rec.Data)
		if res.Key != "" {
			key = res.Key
		}
		rec.Key = key
		if err != nil {
			return Prepared{Outcome: Failed, Key: key, Stage: StageTransform, Err: connectors.Permanent(err)}
		}
		if res.Skipped {
			return Prepared{Outcome: Skipped, Key: key, Stage: StageTransform, Reason: "filter"}
		}
		out = res.Record
	} else {
		if key == "" {
			key, _ = stringify(rec.Data["id"])
		}
		rec.Key = key
		out = rec.Data
	}
	pr := Prepared{
		Outcome: Ready,
		Key:     key,
		Stage:   StageExecute,
		Write: connectors.Write{
			Key:       key,
			Operation: p.Operation,
			Record:    out,
		},
	}
	if p.path != nil {
		v, err := run(w.vm, p.path, out)
		if err != nil {
			return Prepared{Outcome: Failed, Key: key, Stage: StageTransform,
				Err: connectors.Permanent(fmt.Errorf("integration %q, target path, record %q: %w", p.Name, key, err))}
		}
		s, ok := stringify(v)
		if !ok || s == "" {
			return Prepared{Outcome: Failed, Key: key, Stage: StageTransform,
				Err: connectors.Permanent(fmt.Errorf("integration %q, target path, record %q: the path is empty (a field it uses is missing?)", p.Name, key))}
		}
		pr.Write.Path = s
	}
	if p.SkipUnchanged {
		h, err := ContentHash(out)
		if err != nil {
			return Prepared{Outcome: Failed, Key: key, Stage: StageTransform,
				Err: connectors.Permanent(fmt.Errorf("integration %q, record %q: cannot hash the mapped record: %w", p.Name, key, err))}
		}
		pr.Hash = h
	}
	return pr
}

// ContentHash is the hex sha256 of the canonical JSON of a record (object keys
// sorted, as encoding/json writes maps).
func ContentHash(rec map[string]any) (string, error) {
	b, err := json.Marshal(rec)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), nil
}

// normalize applies the integration's normalize block to data in place:
// trim strings, check required fields, coerce types.
func (p *Pipeline) normalize(data map[string]any) error {
	n := p.Normalize
	if n == nil {
		return nil
	}
	if n.Trim {
		trimStrings(data)
	}
	var missing []string
	for i, path := range p.require {
		v, ok := getPath(data, path)
		if !ok || v == nil {
			missing = append(missing, n.Require[i])
			continue
		}
		if s, isStr := v.(string); isStr && strings.TrimSpace(s) == "" {
			missing = append(missing, n.Require[i])
		}
	}
	if len(missing) > 0 {
		noun := "field"
		if len(missing) > 1 {
			noun = "fields"
		}
		return fmt.Errorf("integration %q: missing required %s: %s", p.Name, noun, strings.Join(missing, ", "))
	}
	for _, t := range p.types {
		v, ok := getPath(data, t.path)
		if !ok || v == nil {
			continue
		}
		c, err := castValue(v, t.typ)
		if err != nil {
			return fmt.Errorf("integration %q: field %q: %w", p.Name, t.name, err)
		}
		setPath(data, t.path, c)
	}
	return nil
}

// trimStrings trims surrounding whitespace of every string, recursively, in place.
func trimStrings(v any) any {
	switch x := v.(type) {
	case string:
		return strings.TrimSpace(x)
	case map[string]any:
		for k, e := range x {
			switch s := e.(type) {
			case string:
				// Assign only when trimming changed something: boxing a string allocates.
				if t := strings.TrimSpace(s); len(t) != len(s) {
					x[k] = t
				}
			case map[string]any, []any:
				trimStrings(e)
			}
		}
	case []any:
		for i, e := range x {
			switch s := e.(type) {
			case string:
				if t := strings.TrimSpace(s); len(t) != len(s) {
					x[i] = t
				}
			case map[string]any, []any:
				trimStrings(e)
			}
		}
	}
	return v
}
