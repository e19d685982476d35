// Package runtime runs ferry integrations durably on NATS JetStream: the embedded
// or external NATS connection, the work stream and its consumers, the KV buckets,
// the workers, retries, the dead-letter queue, run tracking, incremental cursors,
// content hashes and run queueing.
//
// # Connection
//
// Open starts an embedded nats-server in this process (no listener; the client
// connects in-process; file store under Options.DataDir/jetstream; explicit
// JetStream memory and storage limits) or connects to Options.NATSURL with an
// optional credentials file and TLS files. SyncPolicy "default" keeps
// nats-server's periodic fsync (nothing is lost when the process dies; a power
// loss may lose the last interval); "always" fsyncs every write. Close drains the
// connection and shuts the embedded server down.
//
// # Layout (version 1)
//
// Every name carries the layout version so a later layout can be created next to
// this one and migrated. Streams and buckets are created idempotently on Open.
// Tenant, integration and run id must be 1-128 of [A-Za-z0-9_-]; anything else is
// rejected (ErrInvalidName) rather than escaped, so names in NATS tooling are the
// names users wrote. Entity keys, which are arbitrary, are base64url-encoded where
// they appear in KV keys.
//
//	stream FERRY_WORK_V1   ferry.v1.work.<tenant>.<integration>.<run>
//	                       work-queue retention, file storage, 2m dedup window;
//	                       one durable pull consumer per run: ferry_v1_run_<tenant>_<run>
//	KV ferry_v1_runs       <tenant>.<run>                      Run (JSON); TTL RunRetention
//	KV ferry_v1_settled    <tenant>.<run>.b<seq>               batch settlement
//	                       <tenant>.<run>.r<seq>_<attempt>     retry settlement
//	                       <tenant>.<run>.p<dlq id>            replay settlement
//	                       TTL RunRetention and a quarter (they outlive their run)
//	KV ferry_v1_dlq        <tenant>.<run>-<seq>-<index>        DLQEntry (JSON); TTL DLQRetention (0: none)
//	KV ferry_v1_cursors    <tenant>.<integration>              Cursor (JSON, 5 revisions)
//	KV ferry_v1_hashes     <tenant>.<integration>.<b64 key>    hex sha256
//	KV ferry_v1_locks      <tenant>.<integration>              run lock with heartbeat
//
// # A run
//
// RunJob (Run for an *engine.Program) creates the run (status queued), takes the
// integration's lock unless AllowParallelRuns (a second run waits, queued, until
// the first ends; a lock whose heartbeat is older than LockTTL belongs to a dead
// process and is taken over), then:
//
//   - Ingest reads the source and publishes messages of up to 1024 records / 256 KiB
//     (a compact length-prefixed encoding of key, position and raw JSON) with the
//     message id <run>.b<seq>. Incremental integrations drop records at or below
//     the stored cursor here.
//   - Workers (Job.Workers, default GOMAXPROCS) pull with explicit ack. For each
//     message: Prepare (normalize, transform; pure compute) every record, check
//     content hashes (skip_unchanged), write Ready records to the sink in chunks of
//     target batch_size under a per-connection semaphore (Options.ConnectionConcurrency),
//     flush the sink if it buffers (Flusher), and classify each record: success,
//     skipped, retry scheduled, or dead (DLQ).
//   - The outcome is committed as the message's settlement with KV Create (once per
//     message, ever). Then its side effects run: one retry message holding the
//     records to retry (message id <run>.r<seq>_<attempt>) and the DLQ entries
//     (create-if-absent). Only then is the message acked. A redelivered message
//     whose settlement exists is not executed again: its side effects are redone
//     (idempotent) and it is acked. So a crash at any point re-executes at most the
//     unsettled messages (at-least-once delivery to the sink) and never counts a
//     record twice.
//   - Counts are the sum of the run's settlements: Total from batches, Success,
//     Skipped, Failed from every settlement, Retried = records rescheduled. Each
//     record ends in exactly one settlement as success, skipped or failed, so
//     Total == Success + Skipped + Failed once the run is done. The run record's
//     counts are refreshed every second while running and recomputed from the
//     settlements when the run ends.
//   - The run is done when ingest ended, every batch and every scheduled retry
//     message is settled, and the consumer has nothing pending or unacked. Status
//     follows engine.StatusFor; the cursor advances; the lock is released; the
//     consumer is deleted.
//
// A run whose process died (or whose context was cancelled) stays "running". Run
// with the same RunID resumes it: the consumer is recreated (work-queue retention
// already removed acked messages, so the new consumer sees exactly the rest, with
// no ack-wait delay), ingest re-reads the source and re-publishes with the same
// message ids (dropped as duplicates within the dedup window; beyond it the
// settlement check drops them), and settlements already made are loaded. This
// assumes the source re-emits records in the same order (files, ordered queries).
// A finished run's id returns its stored result.
//
// # Retries
//
// Per record, not per message. A transient failure (connectors.CategoryOf; an
// uncategorised error is transient) before the integration's max_attempts puts
// the record into the message's retry message with its attempt history; the
// message's not-before time is now + RetryPolicy.Backoff: min(max, initial ×
// multiplier^(attempt-1)) varied by ±jitter, and at least the longest Retry-After
// a sink returned for those records. A worker that receives a retry message
// before its time naks it with that delay. A permanent failure, or the last
// attempt, sends the record to the DLQ.
//
// # DLQ
//
// An entry keeps tenant, integration, run id, entity key, stage, category, error,
// every attempt with time and error, the original record, its position and the
// configuration revision. List filters by integration, run, category and status and
// pages (oldest run first, ingest order within a run; total included). Replay runs
// the record — or an edited record — through the integration's current Job
// (JobFunc; ProgramJobs for a compiled configuration) once: on success or skip the
// entry becomes "replayed" and a replay settlement (failed -1, success or skipped
// +1) is committed for its run before the entry changes, so the run's counts still
// add up and its status is recomputed; on failure the entry stays "pending" with
// the attempt appended. Discard marks an entry "discarded" (the record stays
// counted as failed). Every replay and discard is appended to the entry's Events.
// Listing reads the tenant's entries from KV (O(entries)); an index comes when
// DLQs get large.
//
// # Cursors and hashes
//
// An incremental integration's cursor is (cursor-field value, entity key): values
// that both parse as numbers compare numerically, others as strings; the key
// breaks ties, so of several records sharing the last value, those with a key
// at or below the stored one are not read again and the others are. The cursor
// advances once, when the whole run settled (records in the DLQ count as settled:
// they are replayed from there), to the highest position the run ingested, and
// only if the source read without error. A resumed run reads from the cursor its
// run started with (Run.CursorFrom), so its message ids line up. Sources must
// deliver records in cursor order for the tie-breaker to be exact.
//
// With skip_unchanged the engine sets Prepared.Hash; a record whose hash equals
// the stored one for its entity key is counted skipped; the hash is stored after a
// successful write.
//
// # Errors
//
// RunJob returns an error only for infrastructure problems and cancellation; the
// run then stays resumable. A source or target that cannot open, or a source read
// error, ends the run as failed or partial with Run.Error set and a nil error.
//
// # Metrics
//
// Collectors returns the Prometheus series (metrics.go): ferry_records_total
// {tenant, integration, stage, outcome} counted when a message's settlement is
// first seen by this process, ferry_record_retries_total, ferry_runs_total
// {status} and ferry_run_duration_seconds at the run's end, and, read from
// JetStream at scrape time, ferry_dlq_entries (pending entries per integration)
// and ferry_work_pending_messages (per tenant). No run ids or entity keys are
// labels.
package runtime
