package runtime

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// KeyValue creates a bucket, or updates its configuration, for ferry's use.
//
// On a cluster (cfg.Replicas > 1) it also turns the bucket's direct gets off.
// With them, any replica answers a Get, and a follower that has not applied
// the latest write yet answers with the value before it, or with none: a run
// created a moment ago is "not found", a lease just renewed looks expired.
// Without them the stream's leader answers, and it has every acknowledged
// write. Reads cost a little more; ferry's reads are few and small.
func KeyValue(ctx context.Context, js jetstream.JetStream, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	kv, err := js.CreateOrUpdateKeyValue(ctx, cfg)
	if err != nil || cfg.Replicas <= 1 {
		return kv, err
	}
	s, err := js.Stream(ctx, "KV_"+cfg.Bucket)
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", cfg.Bucket, err)
	}
	// CreateOrUpdateKeyValue always asks for direct gets, so every node
	// turns them off again after it; a handle bound while they were on keeps
	// reading from the leader (the handle decides when it is bound, below).
	if sc := s.CachedInfo().Config; sc.AllowDirect {
		sc.AllowDirect = false
		if _, err := js.UpdateStream(ctx, sc); err != nil {
			return nil, fmt.Errorf("bucket %s: turning direct gets off: %w", cfg.Bucket, err)
		}
	}
	return js.KeyValue(ctx, cfg.Bucket)
}
