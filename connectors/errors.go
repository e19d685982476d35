package connectors

import (
	"errors"
	"time"
)

// Category says whether retrying can help.
type Category string

const (
	// CategoryTransient errors may succeed on retry (timeouts, 5xx, 429, lost connections).
	CategoryTransient Category = "transient"
	// CategoryPermanent errors will fail again (validation, 4xx, bad data).
	CategoryPermanent Category = "permanent"
)

// Error is an error with a category and an optional server-given retry delay.
type Error struct {
	Category   Category
	RetryAfter time.Duration
	Err        error
}

func (e *Error) Error() string { return e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// Permanent marks err as permanent.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &Error{Category: CategoryPermanent, Err: err}
}

// Transient marks err as transient, with an optional retry delay (0 = backoff decides).
func Transient(err error, retryAfter time.Duration) error {
	if err == nil {
		return nil
	}
	return &Error{Category: CategoryTransient, RetryAfter: retryAfter, Err: err}
}

// CategoryOf returns the category of err. Uncategorised errors are transient:
// retrying an unknown failure is safer than dropping it into the DLQ at once.
func CategoryOf(err error) Category {
	var e *Error
	if errors.As(err, &e) {
		return e.Category
	}
	return CategoryTransient
}

// RetryAfterOf returns the retry delay a sink asked for, if any.
func RetryAfterOf(err error) time.Duration {
	var e *Error
	if errors.As(err, &e) {
		return e.RetryAfter
	}
	return 0
}
