package apiserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"time"

	"github.com/ferryhq/ferry/runtime"
	"github.com/nats-io/nats.go/jetstream"
)

// Layout (version 1). Every key carries the tenant; tenant names start with a
// letter or digit, so keys starting with "_" are the server's own indexes.
//
//	KV ferry_v1_tenants   <tenant>                     Tenant (with its Settings; CAS on update)
//	KV ferry_v1_apikeys   <tenant>.<key id>            apiKeyRecord (sha256 of the key, never the key)
//	                      _byid.<key id>               tenant of the key (lookup by the key's prefix)
//	KV ferry_v1_config    <tenant>.current             Revision (the applied one; CAS on its KV revision)
//	                      <tenant>.rev.<n>             Revision n (history)
//	KV ferry_v1_secrets   <tenant>.<b64url name>       secretRecord (AES-256-GCM ciphertext)
//	KV ferry_v1_state     <tenant>.integration.<b64url name>  activation (absent: active)
//	stream FERRY_AUDIT_V1 ferry.v1.audit.<tenant>      AuditEntry (max age Options.AuditRetention; 0: none)
const (
	BucketTenants = "ferry_v1_tenants"
	BucketAPIKeys = "ferry_v1_apikeys"
	BucketConfig  = "ferry_v1_config"
	BucketSecrets = "ferry_v1_secrets"
	BucketState   = "ferry_v1_state"
	AuditStream   = "FERRY_AUDIT_V1"
	auditSubject  = "ferry.v1.audit."
)

// SystemTenant owns the admin keys.
const SystemTenant = "system"

// tenantNameRe: tenant names are used in NATS subjects and keys unescaped.
var tenantNameRe = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

type store struct {
	tenants, keys, config, secrets, state jetstream.KeyValue
	js                                    jetstream.JetStream
}

func openStore(ctx context.Context, js jetstream.JetStream, replicas int, auditRetention time.Duration) (*store, error) {
	if auditRetention != 0 && auditRetention < runtime.MinRetention {
		return nil, fmt.Errorf("apiserver: audit retention %s: must be at least %s, or 0 to keep the audit log for good", auditRetention, runtime.MinRetention)
	}
	st := &store{js: js}
	for _, b := range []struct {
		name    string
		history uint8
		kv      *jetstream.KeyValue
	}{
		{BucketTenants, 1, &st.tenants},
		{BucketAPIKeys, 1, &st.keys},
		{BucketConfig, 1, &st.config},
		{BucketSecrets, 1, &st.secrets},
		{BucketState, 1, &st.state},
	} {
		kv, err := runtime.KeyValue(ctx, js, jetstream.KeyValueConfig{
			Bucket:   b.name,
			History:  b.history,
			Storage:  jetstream.FileStorage,
			Replicas: replicas,
		})
		if err != nil {
			return nil, fmt.Errorf("apiserver: creating bucket %s: %w", b.name, err)
		}
		*b.kv = kv
	}
	_, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        AuditStream,
		Description: "ferry audit log: every change to configuration, keys, secrets",
		Subjects:    []string{auditSubject + ">"},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Replicas:    replicas,
		MaxAge:      auditRetention,
	})
	if err != nil {
		return nil, fmt.Errorf("apiserver: creating stream %s: %w", AuditStream, err)
	}
	return st, nil
}

// getJSON reads key into v; found is false when the key does not exist.
func getJSON(ctx context.Context, kv jetstream.KeyValue, key string, v any) (rev uint64, found bool, err error) {
	e, err := kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("reading %s: %w", key, err)
	}
	if err := json.Unmarshal(e.Value(), v); err != nil {
		return 0, false, fmt.Errorf("decoding %s: %w", key, err)
	}
	return e.Revision(), true, nil
}

// keysOf lists the keys matching a filter; none is not an error. A lister
// that goes quiet for keysAttempt is started again (runtime.ListKeys): one
// whose pending messages expired before delivery would wait for good.
func keysOf(ctx context.Context, kv jetstream.KeyValue, filter string) ([]string, error) {
	return runtime.ListKeys(ctx, kv, filter, keysAttempt)
}

// keysAttempt is how long a key listing may wait for its next key; a
// variable for tests.
var keysAttempt = 10 * time.Second

func isConflict(err error) bool {
	return errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch)
}
