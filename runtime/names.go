package runtime

import (
	"encoding/base64"
	"fmt"
	"regexp"
)

// Layout version. Every stream, consumer, subject and bucket name carries it, so a
// later layout (V2) can be created next to this one and data migrated.
const (
	layoutVersion = "v1"

	// WorkStream holds batches of ingested records and per-record retry messages.
	WorkStream = "FERRY_WORK_V1"
	// workSubjectPrefix is followed by <tenant>.<integration>.<run id>.
	workSubjectPrefix = "ferry.v1.work"

	// KV buckets.
	BucketRuns    = "ferry_v1_runs"    // <tenant>.<run id> → Run
	BucketSettled = "ferry_v1_settled" // <tenant>.<run id>.<settlement id> → settlement
	BucketDLQ     = "ferry_v1_dlq"     // <tenant>.<entry id> → DLQEntry
	BucketCursors = "ferry_v1_cursors" // <tenant>.<integration> → Cursor
	BucketHashes  = "ferry_v1_hashes"  // <tenant>.<integration>.<b64 entity key> → content hash
	BucketLocks   = "ferry_v1_locks"   // <tenant>.<integration> → runLock
)

var nameRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,128}$`)

// ErrInvalidName is returned for a tenant, integration or run id that cannot be
// used in a subject or key.
var ErrInvalidName = fmt.Errorf("invalid name")

// validName checks that s is safe as one subject token and one KV key token:
// letters, digits, '_' and '-' only (the characters of an HCL identifier, minus
// nothing). Dots, wildcards and whitespace would change a subject's meaning, so
// names are rejected rather than escaped: an escaped name would not be what the
// user sees in their config or in `nats` tooling.
func validName(what, s string) error {
	if !nameRE.MatchString(s) {
		return fmt.Errorf("%w: %s %q must be 1-128 letters, digits, '_' or '-'", ErrInvalidName, what, s)
	}
	return nil
}

func workSubject(tenant, integration, runID string) string {
	return workSubjectPrefix + "." + tenant + "." + integration + "." + runID
}

func consumerName(tenant, runID string) string {
	return "ferry_v1_run_" + tenant + "_" + runID
}

func runKey(tenant, runID string) string { return tenant + "." + runID }

func settledPrefix(tenant, runID string) string { return tenant + "." + runID + "." }

func dlqKey(tenant, id string) string { return tenant + "." + id }

func cursorKey(tenant, integration string) string { return tenant + "." + integration }

func lockKey(tenant, integration string) string { return tenant + "." + integration }

// hashKey encodes the entity key (any string) as base64url so it is a valid KV token.
func hashKey(tenant, integration, entity string) string {
	return tenant + "." + integration + "." + encodeKey(entity)
}

func encodeKey(entity string) string {
	if entity == "" {
		return "_"
	}
	return base64.RawURLEncoding.EncodeToString([]byte(entity))
}
