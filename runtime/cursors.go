package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Cursor is an incremental integration's position: the highest cursor-field value
// whose records all settled, with the entity key as tie-breaker, so records sharing
// a value are neither skipped nor read twice.
type Cursor struct {
	Value   string    `json:"value"`
	Key     string    `json:"key"`
	RunID   string    `json:"runId,omitempty"`
	Updated time.Time `json:"updated,omitzero"`
}

// IsZero reports an unset cursor (read from the start).
func (c Cursor) IsZero() bool { return c.Value == "" && c.Key == "" }

// compareCursor orders positions by value then key. Values that both parse as
// numbers compare numerically; otherwise as strings (RFC 3339 timestamps of one
// format order correctly as strings).
func compareCursor(a, b Cursor) int {
	if c := compareValue(a.Value, b.Value); c != 0 {
		return c
	}
	return strings.Compare(a.Key, b.Key)
}

func compareValue(a, b string) int {
	fa, ea := strconv.ParseFloat(a, 64)
	fb, eb := strconv.ParseFloat(b, 64)
	if ea == nil && eb == nil {
		switch {
		case fa < fb:
			return -1
		case fa > fb:
			return 1
		}
		return 0
	}
	return strings.Compare(a, b)
}

// cursorValue reads a (dotted) field of a decoded record as a cursor value.
func cursorValue(data map[string]any, field string) (string, bool) {
	var cur any = data
	for _, p := range strings.Split(field, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return "", false
		}
		if cur, ok = m[p]; !ok {
			return "", false
		}
	}
	switch v := cur.(type) {
	case nil:
		return "", false
	case string:
		return v, true
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64), true
	case json.Number:
		return v.String(), true
	default:
		return fmt.Sprint(v), true
	}
}

// Cursors reads and resets incremental cursors (KV ferry_v1_cursors).
type Cursors struct{ rt *Runtime }

// Cursors returns the cursor store.
func (rt *Runtime) Cursors() *Cursors { return &Cursors{rt} }

// Get returns the cursor of an integration; a zero Cursor when none is stored.
func (s *Cursors) Get(ctx context.Context, tenant, integration string) (Cursor, error) {
	if err := validName("tenant", tenant); err != nil {
		return Cursor{}, err
	}
	if err := validName("integration", integration); err != nil {
		return Cursor{}, err
	}
	e, err := s.rt.cursorKV.Get(ctx, cursorKey(tenant, integration))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return Cursor{}, nil
	}
	if err != nil {
		return Cursor{}, fmt.Errorf("runtime: read cursor of %s: %w", integration, err)
	}
	var c Cursor
	if err := json.Unmarshal(e.Value(), &c); err != nil {
		return Cursor{}, fmt.Errorf("runtime: cursor of %s: %w", integration, err)
	}
	return c, nil
}

// Reset deletes the cursor: the next run reads from the start.
func (s *Cursors) Reset(ctx context.Context, tenant, integration string) error {
	if err := validName("tenant", tenant); err != nil {
		return err
	}
	if err := validName("integration", integration); err != nil {
		return err
	}
	if err := s.rt.cursorKV.Delete(ctx, cursorKey(tenant, integration)); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("runtime: reset cursor of %s: %w", integration, err)
	}
	return nil
}

// set stores c if it is beyond the stored cursor (a cursor never moves back except
// by Reset).
func (s *Cursors) set(ctx context.Context, tenant, integration string, c Cursor) error {
	cur, err := s.Get(ctx, tenant, integration)
	if err != nil {
		return err
	}
	if !cur.IsZero() && compareCursor(c, cur) <= 0 {
		return nil
	}
	b, _ := json.Marshal(c)
	if _, err := s.rt.cursorKV.Put(ctx, cursorKey(tenant, integration), b); err != nil {
		return fmt.Errorf("runtime: store cursor of %s: %w", integration, err)
	}
	return nil
}

// Hashes are the content hashes of skip_unchanged integrations (KV ferry_v1_hashes).
type Hashes struct{ rt *Runtime }

// Hashes returns the hash store.
func (rt *Runtime) Hashes() *Hashes { return &Hashes{rt} }

// Get returns the stored hash of an entity ("" when none).
func (s *Hashes) Get(ctx context.Context, tenant, integration, entity string) (string, error) {
	e, err := s.rt.hashKV.Get(ctx, hashKey(tenant, integration, entity))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("runtime: read hash: %w", err)
	}
	return string(e.Value()), nil
}

// Put stores the hash of an entity's last successful write.
func (s *Hashes) Put(ctx context.Context, tenant, integration, entity, hash string) error {
	if _, err := s.rt.hashKV.Put(ctx, hashKey(tenant, integration, entity), []byte(hash)); err != nil {
		return fmt.Errorf("runtime: store hash: %w", err)
	}
	return nil
}

// Reset forgets every hash of an integration: the next run writes everything.
func (s *Hashes) Reset(ctx context.Context, tenant, integration string) error {
	if err := validName("tenant", tenant); err != nil {
		return err
	}
	if err := validName("integration", integration); err != nil {
		return err
	}
	l, err := s.rt.hashKV.ListKeysFiltered(ctx, tenant+"."+integration+".>")
	if err != nil {
		return fmt.Errorf("runtime: reset hashes: %w", err)
	}
	var keys []string
	for k := range l.Keys() {
		keys = append(keys, k)
	}
	for _, k := range keys {
		if err := s.rt.hashKV.Purge(ctx, k); err != nil {
			return fmt.Errorf("runtime: reset hashes: %w", err)
		}
	}
	return nil
}
