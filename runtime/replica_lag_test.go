package runtime

import (
	"context"
	"errors"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferryhq/ferry/engine"
	"github.com/nats-io/nats.go/jetstream"
)

// laggingKV is a bucket whose first lag listings with values lack one of
// them (the first), as a listing served by a NATS replica that is behind
// can (nats-server places a watch's consumer on any peer of the stream).
type laggingKV struct {
	jetstream.KeyValue
	lag, dropped atomic.Int32
}

func (kv *laggingKV) Watch(ctx context.Context, keys string, opts ...jetstream.WatchOpt) (jetstream.KeyWatcher, error) {
	real, err := kv.KeyValue.Watch(ctx, keys, opts...)
	if err != nil {
		return nil, err
	}
	w := &droppingWatcher{real: real, ch: make(chan jetstream.KeyValueEntry)}
	go func() {
		defer close(w.ch)
		first := true
		for e := range real.Updates() {
			if e != nil && first {
				first = false
				if kv.lag.Add(-1) >= 0 {
					kv.dropped.Add(1) // the replica does not have it yet
					continue
				}
			}
			w.ch <- e
			if e == nil {
				return
			}
		}
	}()
	return w, nil
}

type droppingWatcher struct {
	real jetstream.KeyWatcher
	ch   chan jetstream.KeyValueEntry
}

func (w *droppingWatcher) Updates() <-chan jetstream.KeyValueEntry { return w.ch }
func (w *droppingWatcher) Stop() error                             { return w.real.Stop() }

// Found by TestClusterScaleOut: a run's end counted its settlements from a
// listing that lacked the last one (a replica behind) and ended
// "succeeded" with 128 records short. The end reads again until every
// settlement the run counted is listed.
func TestRunEndWaitsForALaggingReplica(t *testing.T) {
	const n = 5000
	prog, _ := writeProgram(t, n)
	rt := openTest(t, Options{DataDir: filepath.Join(t.TempDir(), "data")})
	kv := &laggingKV{KeyValue: rt.settleKV}
	kv.lag.Store(2)
	rt.settleKV = kv
	res, err := rt.Run(context.Background(), "", prog, "items", RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != engine.RunSucceeded || res.Counts.Total != n {
		t.Fatalf("%s %+v, want succeeded with %d records", res.Status, res.Counts, n)
	}
	if kv.dropped.Load() == 0 {
		t.Fatal("no listing lagged: the test proves nothing")
	}
}

// A resumed run lists the settlements of its earlier process; from a
// replica behind, that list lacks some whose messages were acked and will
// not come again. The run lists them again once nothing is left to deliver,
// instead of waiting for them for good.
func TestResumedRunRelistsSettlementsALaggingReplicaLacked(t *testing.T) {
	dir := t.TempDir()
	rt := openTest(t, Options{DataDir: filepath.Join(dir, "data")})
	sink := newFileSink(t, filepath.Join(dir, "out.ndjson"))
	sink.delay = 2 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		// Cancel once two messages settled (and were acked): the first
		// will be missing from the resume's listing.
		for {
			if sets, _ := rt.settlements(context.Background(), "acme", "lagging", false); len(sets) >= 2 {
				break
			}
			time.Sleep(time.Millisecond)
		}
		cancel()
	}()
	job := testJob("acme", "orders", genSource{n: 20000}, sink)
	if _, err := rt.RunJob(ctx, job, RunOptions{RunID: "lagging"}); !errors.Is(err, context.Canceled) {
		t.Fatalf("want canceled, got %v", err)
	}
	kv := &laggingKV{KeyValue: rt.settleKV}
	kv.lag.Store(1)
	rt.settleKV = kv
	sink.delay = 0
	rctx, rcancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer rcancel()
	res, err := rt.RunJob(rctx, job, RunOptions{RunID: "lagging"})
	if err != nil {
		t.Fatalf("the resumed run did not end: %v", err)
	}
	if kv.dropped.Load() == 0 {
		t.Fatal("the resume's listing did not lag: the test proves nothing")
	}
	if res.Counts.Total != 20000 || res.Status != engine.RunSucceeded {
		t.Fatalf("resumed: %s %+v", res.Status, res.Counts)
	}
}
