package scheduler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Layout (version 1):
//
//	stream FERRY_FIRES_V1   ferry.v1.fires.<tenant>.<schedule>   one claim message per fire
//	                        message id <tenant>.<schedule>.<unix fire time>; 24h dedup window,
//	                        7 days retention (a log of recent fires)
//	KV ferry_v1_schedules   <tenant>.<schedule>                  State (JSON)
const (
	FiresStream    = "FERRY_FIRES_V1"
	FiresSubject   = "ferry.v1.fires."
	BucketState    = "ferry_v1_schedules"
	DedupWindow    = 24 * time.Hour
	firesRetention = 7 * 24 * time.Hour
)

// State is what the cluster remembers of a schedule (KV ferry_v1_schedules).
type State struct {
	// Sig identifies the expression, zone and enabled flag the state was made
	// for; when it changes the schedule starts afresh (no catch-up).
	Sig string `json:"sig"`
	// Checked: every fire time up to and including Checked was handled
	// (fired, skipped by policy, or missed).
	Checked time.Time `json:"checked"`
	// LastFire is the latest fire time a node claimed and started.
	LastFire    time.Time `json:"lastFire,omitzero"`
	LastOutcome Outcome   `json:"lastOutcome,omitempty"`
	LastError   string    `json:"lastError,omitempty"`
}

// store claims fires and keeps State.
type store interface {
	// claim reports whether this node won the fire (false: another node did).
	claim(ctx context.Context, f Fire, node string) (bool, error)
	get(ctx context.Context, tenant, name string) (State, bool, error)
	// update applies fn to the stored state (zero State when absent) with CAS.
	update(ctx context.Context, tenant, name string, fn func(*State)) (State, error)
}

// jsStore is the JetStream store shared by every node.
type jsStore struct {
	js jetstream.JetStream
	kv jetstream.KeyValue
}

// openJetStream creates the stream and bucket idempotently.
func openJetStream(ctx context.Context, js jetstream.JetStream, replicas int) (*jsStore, error) {
	if replicas <= 0 {
		replicas = 1
	}
	_, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        FiresStream,
		Description: "ferry schedule fires: one message per schedule and fire time; the message id makes each fire happen once cluster-wide",
		Subjects:    []string{FiresSubject + ">"},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		MaxAge:      firesRetention,
		Duplicates:  DedupWindow,
		Replicas:    replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("scheduler: stream %s: %w", FiresStream, err)
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      BucketState,
		Description: "ferry schedules: last fire and handled-up-to time per schedule",
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("scheduler: bucket %s: %w", BucketState, err)
	}
	return &jsStore{js: js, kv: kv}, nil
}

func fireID(f Fire) string {
	return f.Tenant + "." + f.Schedule + "." + strconv.FormatInt(f.At.Unix(), 10)
}

type claimMsg struct {
	Tenant      string    `json:"tenant"`
	Schedule    string    `json:"schedule"`
	Integration string    `json:"integration"`
	At          time.Time `json:"at"`
	CatchUp     bool      `json:"catchUp,omitempty"`
	Node        string    `json:"node,omitempty"`
}

// errDuplicateInProcess is JetStream's answer, on a replicated stream, to a
// publish whose message id another publish is still committing: not a
// duplicate yet, since that publish may still fail.
const errDuplicateInProcess jetstream.ErrorCode = 10158

func (s *jsStore) claim(ctx context.Context, f Fire, node string) (bool, error) {
	b, _ := json.Marshal(claimMsg{Tenant: f.Tenant, Schedule: f.Schedule, Integration: f.Integration, At: f.At.UTC(), CatchUp: f.CatchUp, Node: node})
	for try := 1; ; try++ {
		ack, err := s.js.Publish(ctx, FiresSubject+f.Tenant+"."+f.Schedule, b, jetstream.WithMsgID(fireID(f)))
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) && apiErr.ErrorCode == errDuplicateInProcess && try < 20 {
			// Every node fires at the same instant; ask again once the
			// other node's claim is committed (or failed).
			select {
			case <-ctx.Done():
				return false, fmt.Errorf("claiming fire %s: %w", fireID(f), ctx.Err())
			case <-time.After(time.Duration(try) * 10 * time.Millisecond):
			}
			continue
		}
		if err != nil {
			return false, fmt.Errorf("claiming fire %s: %w", fireID(f), err)
		}
		return !ack.Duplicate, nil
	}
}

func stateKey(tenant, name string) string { return tenant + "." + name }

func (s *jsStore) get(ctx context.Context, tenant, name string) (State, bool, error) {
	st, _, found, err := s.getRev(ctx, tenant, name)
	return st, found, err
}

func (s *jsStore) getRev(ctx context.Context, tenant, name string) (State, uint64, bool, error) {
	var st State
	e, err := s.kv.Get(ctx, stateKey(tenant, name))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return st, 0, false, nil
	}
	if err != nil {
		return st, 0, false, fmt.Errorf("reading schedule state %s: %w", stateKey(tenant, name), err)
	}
	if err := json.Unmarshal(e.Value(), &st); err != nil {
		return st, 0, false, fmt.Errorf("decoding schedule state %s: %w", stateKey(tenant, name), err)
	}
	return st, e.Revision(), true, nil
}

func (s *jsStore) update(ctx context.Context, tenant, name string, fn func(*State)) (State, error) {
	for attempt := 0; ; attempt++ {
		st, rev, found, err := s.getRev(ctx, tenant, name)
		if err != nil {
			return st, err
		}
		fn(&st)
		b, _ := json.Marshal(st)
		if found {
			_, err = s.kv.Update(ctx, stateKey(tenant, name), b, rev)
		} else {
			_, err = s.kv.Create(ctx, stateKey(tenant, name), b)
		}
		if err == nil {
			return st, nil
		}
		conflict := errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch)
		if !conflict || attempt >= 20 {
			return st, fmt.Errorf("writing schedule state %s: %w", stateKey(tenant, name), err)
		}
	}
}

// memStore is a single-process store (no JetStream): tests and tools.
type memStore struct {
	mu     sync.Mutex
	claims map[string]bool
	states map[string]State
}

func newMemStore() *memStore {
	return &memStore{claims: map[string]bool{}, states: map[string]State{}}
}

func (m *memStore) claim(_ context.Context, f Fire, _ string) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	id := fireID(f)
	if m.claims[id] {
		return false, nil
	}
	m.claims[id] = true
	return true, nil
}

func (m *memStore) get(_ context.Context, tenant, name string) (State, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	st, ok := m.states[stateKey(tenant, name)]
	return st, ok, nil
}

func (m *memStore) update(_ context.Context, tenant, name string, fn func(*State)) (State, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	st := m.states[stateKey(tenant, name)]
	fn(&st)
	m.states[stateKey(tenant, name)] = st
	return st, nil
}

// ReadState reads a schedule's State from JetStream without a Scheduler (the
// API reads lastFire this way). found is false for a schedule that never
// ran on any node.
func ReadState(ctx context.Context, js jetstream.JetStream, tenant, name string) (st State, found bool, err error) {
	kv, err := js.KeyValue(ctx, BucketState)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return st, false, nil
	}
	if err != nil {
		return st, false, err
	}
	s := &jsStore{js: js, kv: kv}
	return s.get(ctx, tenant, name)
}
