package apiserver

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// subsCache holds every tenant's subscriptions, kept current by a watch of
// BucketSubscriptions. Emit consults it so that an event no subscription
// asks for is not recorded at all (a busy node emits two events per run;
// a tenant without subscriptions should not pay for them), and fanout so
// that an event does not cost a listing of the bucket.
//
// A subscription made on another node reaches this node's cache within
// milliseconds; an event emitted here before that is not delivered to it.
type subsCache struct {
	mu       sync.RWMutex
	byTenant map[string]map[string]subscriptionRecord // tenant → id → record
	ready    chan struct{}                            // closed once the current values are in
	stop     context.CancelFunc
	done     chan struct{}
}

// watchSubscriptions starts the cache's watch; stop it with subsCache.close.
func watchSubscriptions(kv jetstream.KeyValue) (*subsCache, error) {
	ctx, cancel := context.WithCancel(context.Background())
	w, err := kv.WatchAll(ctx)
	if err != nil {
		cancel()
		return nil, err
	}
	c := &subsCache{byTenant: map[string]map[string]subscriptionRecord{}, ready: make(chan struct{}), stop: cancel, done: make(chan struct{})}
	go func() {
		defer close(c.done)
		defer func() { _ = w.Stop() }()
		for {
			select {
			case e, ok := <-w.Updates():
				if !ok {
					return
				}
				if e == nil {
					close(c.ready)
					continue
				}
				c.apply(e)
			case <-ctx.Done():
				return
			}
		}
	}()
	return c, nil
}

func (c *subsCache) apply(e jetstream.KeyValueEntry) {
	var rec subscriptionRecord
	put := e.Operation() == jetstream.KeyValuePut && json.Unmarshal(e.Value(), &rec) == nil && rec.Tenant != ""
	c.mu.Lock()
	defer c.mu.Unlock()
	if put {
		c.set(rec)
		return
	}
	// A delete or purge of <tenant>.<id> (tenant names have no dots).
	if tenant, id, ok := strings.Cut(e.Key(), "."); ok {
		delete(c.byTenant[tenant], id)
	}
}

func (c *subsCache) set(rec subscriptionRecord) {
	if c.byTenant[rec.Tenant] == nil {
		c.byTenant[rec.Tenant] = map[string]subscriptionRecord{}
	}
	c.byTenant[rec.Tenant][rec.ID] = rec
}

// put records a subscription this node wrote, so this node's events reach
// it at once, before the watch brings it back.
func (c *subsCache) put(rec subscriptionRecord) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.set(rec)
}

// remove forgets a subscription this node deleted.
func (c *subsCache) remove(tenant, id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.byTenant[tenant], id)
}

// matching returns the subscriptions e goes to; known is false until the
// cache has the bucket's current values (then the caller reads the bucket).
func (c *subsCache) matching(e storedEvent) (subs []subscriptionRecord, known bool) {
	select {
	case <-c.ready:
	default:
		return nil, false
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	for _, sub := range c.byTenant[e.Tenant] {
		if sub.matches(e) {
			subs = append(subs, sub)
		}
	}
	return subs, true
}

// waitReady waits (at most d) for the current values, so a server answers
// with its cache from its first request.
func (c *subsCache) waitReady(d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-c.ready:
	case <-t.C:
	}
}

func (c *subsCache) close() {
	c.stop()
	<-c.done
}
