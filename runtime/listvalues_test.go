package runtime

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// quietWatcher is what nats.go's watcher does when the last message it
// counted as pending expired before delivery: it never says the current
// values ended.
type quietWatcher struct {
	ch   chan jetstream.KeyValueEntry
	stop chan struct{}
}

func (w quietWatcher) Updates() <-chan jetstream.KeyValueEntry { return w.ch }
func (w quietWatcher) Stop() error                             { close(w.stop); return nil }

// quietOnce is a bucket whose first watcher hands over one value and then
// goes quiet.
type quietOnce struct {
	jetstream.KeyValue
	calls int
}

func (kv *quietOnce) Watch(ctx context.Context, keys string, opts ...jetstream.WatchOpt) (jetstream.KeyWatcher, error) {
	kv.calls++
	if kv.calls > 1 {
		return kv.KeyValue.Watch(ctx, keys, opts...)
	}
	real, err := kv.KeyValue.Watch(ctx, keys, opts...)
	if err != nil {
		return nil, err
	}
	first := <-real.Updates()
	_ = real.Stop()
	w := quietWatcher{ch: make(chan jetstream.KeyValueEntry, 1), stop: make(chan struct{})}
	w.ch <- first
	return w, nil
}

// A run list once could hang like the key lister did (apiserver's
// TestKeysOfRetriesAStuckLister): listValues starts a quiet watcher again.
func TestListValuesRetriesAQuietWatcher(t *testing.T) {
	defer func(d time.Duration) { listIdle = d }(listIdle)
	listIdle = 200 * time.Millisecond
	rt := openTest(t, Options{})
	ctx := context.Background()
	for _, k := range []string{"acme.a", "acme.b", "other.c"} {
		if _, err := rt.runsKV.Put(ctx, k, []byte("{}")); err != nil {
			t.Fatal(err)
		}
	}
	kv := &quietOnce{KeyValue: rt.runsKV}
	entries, err := listValues(ctx, kv, "acme.>")
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, e := range entries {
		keys = append(keys, e.Key())
	}
	slices.Sort(keys)
	if !slices.Equal(keys, []string{"acme.a", "acme.b"}) || kv.calls != 2 {
		t.Errorf("keys %v after %d watches, want [acme.a acme.b] after 2", keys, kv.calls)
	}

	// A caller's own deadline is an error, not a partial list.
	kv = &quietOnce{KeyValue: rt.runsKV}
	cctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if entries, err := listValues(cctx, kv, "acme.>"); err == nil {
		t.Errorf("%d entries, want the caller's deadline as an error", len(entries))
	}
}
