package postgres

import (
	"context"
	"errors"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/ferryhq/ferry/connectors"
)

// classify categorises err: data and constraint errors (SQLSTATE classes 22
// and 23) and other statement errors (syntax, undefined table, permissions)
// are permanent; serialization failures, deadlocks, shutdowns, connection
// errors and lost connections are transient.
func classify(err error) error {
	if err == nil {
		return nil
	}
	var ce *connectors.Error
	if errors.As(err, &ce) {
		return err
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return connectors.Transient(err, 0)
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		if transientCode(pe.Code) {
			return connectors.Transient(err, 0)
		}
		return connectors.Permanent(err)
	}
	// Anything else comes from the connection itself: dial failures, a
	// terminated backend, a broken socket.
	return connectors.Transient(err, 0)
}

func transientCode(code string) bool {
	switch code {
	case "40001", // serialization_failure
		"40P01", // deadlock_detected
		"55P03", // lock_not_available
		"57014", // query_canceled (statement_timeout)
		"57P01", // admin_shutdown
		"57P02", // crash_shutdown
		"57P03": // cannot_connect_now
		return true
	}
	return strings.HasPrefix(code, "08") || // connection exception
		strings.HasPrefix(code, "53") || // insufficient resources
		strings.HasPrefix(code, "58") // system error (I/O)
}

// dataError reports errors caused by the data of a row (SQLSTATE class 22,
// data exception, and 23, integrity constraint violation): retrying the rows
// one by one isolates the bad ones.
func dataError(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return strings.HasPrefix(pe.Code, "22") || strings.HasPrefix(pe.Code, "23")
	}
	return false
}
