package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// runLock is the value of a lock key (KV ferry_v1_locks, <tenant>.<integration>):
// the run holding the integration and when it last proved to be alive.
type runLock struct {
	RunID     string    `json:"runId"`
	Heartbeat time.Time `json:"heartbeat"`
}

// heldLock is a lock this process holds; it heartbeats until released.
type heldLock struct {
	rt    *Runtime
	key   string
	runID string
	rev   uint64
	stop  chan struct{}
	done  chan struct{}
}

// acquireLock takes the integration's run lock for runID, waiting while another
// live run holds it. A lock whose heartbeat is older than LockTTL is stale (its
// process died) and is taken over; so is a lock already held by the same run id
// (a resumed run). onWait is called once when the run has to wait.
func (rt *Runtime) acquireLock(ctx context.Context, tenant, integration, runID string, onWait func()) (*heldLock, error) {
	key := lockKey(tenant, integration)
	poll := min(rt.opts.LockTTL/10, 250*time.Millisecond)
	waited := false
	for {
		val, _ := json.Marshal(runLock{RunID: runID, Heartbeat: rt.opts.Now()})
		rev, err := rt.lockKV.Create(ctx, key, val)
		if err == nil {
			return rt.startHeartbeat(key, runID, rev), nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return nil, err
		}
		e, err := rt.lockKV.Get(ctx, key)
		if err == nil {
			var l runLock
			_ = json.Unmarshal(e.Value(), &l)
			if l.RunID == runID || rt.opts.Now().Sub(l.Heartbeat) > rt.opts.LockTTL {
				if rev, err := rt.lockKV.Update(ctx, key, val, e.Revision()); err == nil {
					return rt.startHeartbeat(key, runID, rev), nil
				}
				continue
			}
		} else if !errors.Is(err, jetstream.ErrKeyNotFound) {
			return nil, err
		}
		if !waited && onWait != nil {
			waited = true
			onWait()
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(poll):
		}
	}
}

func (rt *Runtime) startHeartbeat(key, runID string, rev uint64) *heldLock {
	l := &heldLock{rt: rt, key: key, runID: runID, rev: rev, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(l.done)
		t := time.NewTicker(rt.opts.LockTTL / 3)
		defer t.Stop()
		for {
			select {
			case <-l.stop:
				return
			case <-t.C:
				val, _ := json.Marshal(runLock{RunID: runID, Heartbeat: rt.opts.Now()})
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				rev, err := rt.lockKV.Update(ctx, key, val, l.rev)
				if err != nil && !natsUnavailable(err) {
					// An update applied while its answer was lost (the
					// connection broke) moved the revision on: adopt it
					// while the lock is still this run's.
					if l.adopt(ctx) {
						rev, err = rt.lockKV.Update(ctx, key, val, l.rev)
					}
				}
				cancel()
				if err != nil {
					rt.log.Warn("run lock heartbeat failed", "lock", key, "run", runID, "err", err)
					continue
				}
				l.rev = rev
			}
		}
	}()
	return l
}

// adopt takes the lock's current revision when the lock still names this
// run; false when it is gone, another run's, or could not be read.
func (l *heldLock) adopt(ctx context.Context) bool {
	e, err := l.rt.lockKV.Get(ctx, l.key)
	if err != nil {
		return false
	}
	var cur runLock
	if json.Unmarshal(e.Value(), &cur) != nil || cur.RunID != l.runID {
		return false
	}
	l.rev = e.Revision()
	return true
}

// release stops the heartbeat and deletes the lock if this run still holds
// it. It rides out a short NATS outage (the run just ended: the next run of
// the integration must not wait out the lock's TTL).
func (l *heldLock) release(ctx context.Context) {
	close(l.stop)
	<-l.done
	err := l.rt.ridingOutages(ctx, "release the run lock "+l.key, func(ctx context.Context) error {
		err := l.rt.lockKV.Delete(ctx, l.key, jetstream.LastRevision(l.rev))
		if err == nil || natsUnavailable(err) {
			return err
		}
		// The revision moved on: an earlier attempt deleted the lock, or a
		// heartbeat was applied, while their answers were lost.
		if _, gerr := l.rt.lockKV.Get(ctx, l.key); errors.Is(gerr, jetstream.ErrKeyNotFound) {
			return nil
		}
		if !l.adopt(ctx) {
			return err
		}
		return l.rt.lockKV.Delete(ctx, l.key, jetstream.LastRevision(l.rev))
	})
	if err != nil {
		l.rt.log.Warn("run lock release failed", "lock", l.key, "run", l.runID, "err", err)
	}
}

// abandon stops the heartbeat without releasing (the run did not end; a resume
// takes the lock over).
func (l *heldLock) abandon() {
	close(l.stop)
	<-l.done
}
