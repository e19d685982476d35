package apiserver

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// The idempotency keys of a flush are created in one pipelined round,
// stored exactly as KeyValue.Create stores them; a key stored already, or
// deleted since (a refused delivery's claim, undone), is left to the full
// path, which keeps the existing one and takes the deleted one over.
func TestClaimPipelined(t *testing.T) {
	e := newRunEnv(t)
	m := e.s.runs
	ctx := t.Context()
	key := func(id string) string { return idempotencyKey("acme", "items", "webhook:"+id) }
	if _, err := m.idem.Create(ctx, key("stored"), []byte("run-before")); err != nil {
		t.Fatal(err)
	}
	if _, err := m.idem.Create(ctx, key("undone"), []byte("run-refused")); err != nil {
		t.Fatal(err)
	}
	if err := m.idem.Delete(ctx, key("undone")); err != nil {
		t.Fatal(err)
	}

	keys := []string{key("new"), key("stored"), key("undone")}
	if got := m.createKeys(ctx, keys, []time.Duration{time.Hour, time.Hour, time.Hour}, "run-1"); !slices.Equal(got, []bool{true, false, false}) {
		t.Fatalf("created %v, want [true false false]", got)
	}
	if v, err := m.idem.Get(ctx, key("new")); err != nil || string(v.Value()) != "run-1" {
		t.Fatalf("the key created is not the KV's: %v", err)
	}
	if _, err := m.idem.Create(ctx, key("new"), []byte("run-2")); !errors.Is(err, jetstream.ErrKeyExists) {
		t.Errorf("Create of a key created pipelined: %v, want ErrKeyExists", err)
	}
	if v, err := m.idem.Get(ctx, key("stored")); err != nil || string(v.Value()) != "run-before" {
		t.Errorf("the stored key changed: %v", err)
	}

	// Through a flush's claim: the deleted key is taken over on the full
	// path, a delivery repeated in the batch shares the first one's
	// outcome, one without an id is stored without a claim.
	q := &ingestQueue{m: m, tenant: "acme", integration: "items"}
	d := func(id string) *delivery {
		dl := &delivery{id: id, result: make(chan deliveryResult, 1)}
		if id != "" {
			dl.idem = key(id)
		}
		return dl
	}
	batch := []*delivery{d("undone"), d("fresh"), d("fresh"), d("")}
	accepted, repeats, claimed := q.claim(ctx, batch, "run-3")
	if len(accepted) != 3 || accepted[0] != batch[0] || accepted[1] != batch[1] || accepted[2] != batch[3] ||
		len(repeats) != 1 || repeats[0] != batch[2] {
		t.Fatalf("accepted %d, repeats %d", len(accepted), len(repeats))
	}
	slices.Sort(claimed)
	want := []string{key("fresh"), key("undone")}
	slices.Sort(want)
	if !slices.Equal(claimed, want) {
		t.Errorf("claimed %v, want %v", claimed, want)
	}
	for _, id := range []string{"undone", "fresh"} {
		if v, err := m.idem.Get(ctx, key(id)); err != nil || string(v.Value()) != "run-3" {
			t.Errorf("key %s: %v", id, err)
		}
	}
}
