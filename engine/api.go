package engine

// This file is the engine's contract with the CLI (cmd/ferry) and the durable
// runtime (runtime/). Keep these names and shapes stable; add, don't change.

import (
	"time"

	"github.com/ferryhq/ferry/connectors"
)

// Stage names, in pipeline order.
type Stage string

const (
	StageIngest    Stage = "ingest"
	StageNormalize Stage = "normalize"
	StageTransform Stage = "transform"
	StageExecute   Stage = "execute"
	StageFinalize  Stage = "finalize"
)

// Stages lists the five stages in order.
var Stages = []Stage{StageIngest, StageNormalize, StageTransform, StageExecute, StageFinalize}

// Outcome is how a record ended (or, after Prepare, whether it is ready to write).
type Outcome int

const (
	// Ready: normalize and transform passed; Write is set and must be executed.
	Ready Outcome = iota
	Success
	Skipped
	Failed
)

func (o Outcome) String() string {
	switch o {
	case Ready:
		return "ready"
	case Success:
		return "success"
	case Skipped:
		return "skipped"
	case Failed:
		return "failed"
	}
	return "unknown"
}

// Prepared is the result of running normalize and transform on one record.
type Prepared struct {
	Outcome Outcome // Ready, Skipped or Failed
	Key     string  // entity key ("" when the mapping has none and no key could be derived)
	Stage   Stage   // where it was skipped or failed
	Err     error   // categorised with connectors.Permanent/Transient when Failed
	// Reason says why a record was skipped ("filter", "unchanged").
	Reason string
	// Write is the target write when Outcome == Ready.
	Write connectors.Write
	// Hash is the content hash of Write.Record (hex sha256 of canonical JSON), set
	// when the integration uses skip_unchanged.
	Hash string
}

// Counts are a run's record counts. Total == Success + Failed + Skipped always.
type Counts struct {
	Total   int64 `json:"total"`
	Success int64 `json:"success"`
	Failed  int64 `json:"failed"`
	Skipped int64 `json:"skipped"`
	Retried int64 `json:"retried"`
}

// RunStatus is a run's final status.
type RunStatus string

const (
	RunQueued    RunStatus = "queued"
	RunRunning   RunStatus = "running"
	RunSucceeded RunStatus = "succeeded" // nothing failed
	RunPartial   RunStatus = "partial"   // some records failed, some succeeded or were skipped
	RunFailed    RunStatus = "failed"    // every record failed, or the run could not run (source error)
	RunCancelled RunStatus = "cancelled" // stopped on request; what had not settled was dropped
)

// StatusFor derives a finished run's status from its counts and run-level error.
func StatusFor(c Counts, runErr error) RunStatus {
	switch {
	case runErr != nil && c.Success == 0 && c.Skipped == 0:
		return RunFailed
	case runErr != nil:
		return RunPartial
	case c.Failed == 0:
		return RunSucceeded
	case c.Success == 0 && c.Skipped == 0:
		return RunFailed
	default:
		return RunPartial
	}
}

// RecordFailure is one failed record of a run.
type RecordFailure struct {
	Key      string              `json:"key"`
	Stage    Stage               `json:"stage"`
	Category connectors.Category `json:"category"`
	Message  string              `json:"message"`
	Attempts int                 `json:"attempts"`
	Record   map[string]any      `json:"record"`
	Position string              `json:"position,omitempty"`
}

// RunResult is the summary of a finished local run.
type RunResult struct {
	ID          string          `json:"id"`
	Integration string          `json:"integration"`
	Status      RunStatus       `json:"status"`
	Counts      Counts          `json:"counts"`
	Started     time.Time       `json:"started"`
	Ended       time.Time       `json:"ended"`
	Error       string          `json:"error,omitempty"`
	Failures    []RecordFailure `json:"failures,omitempty"`
	// FailedFile is where failed records were written (local in-memory runs).
	FailedFile string `json:"failedFile,omitempty"`
}
