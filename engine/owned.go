package engine

import (
	"context"
	"errors"
	"io"

	"github.com/ferryhq/ferry/connectors"
)

// Every source and sink the engine opens gets a connection of its own, so it
// owns it: when the connection holds resources (a postgres pool implements
// io.Closer), closing the source or sink closes it too. Without this, each
// scheduled run under `ferry serve` left a pool of open database connections
// behind.

// ownedSource is a source that closes its connection when it is closed. The
// runtime and Program.Run close sources that implement io.Closer.
type ownedSource struct {
	connectors.Source
	conn io.Closer
}

func (s *ownedSource) Close() error {
	var err error
	if c, ok := s.Source.(io.Closer); ok {
		err = c.Close()
	}
	return errors.Join(err, s.conn.Close())
}

// ownedSink is a sink that closes its connection after itself. It keeps the
// optional interfaces of the sink it wraps: Flush is a no-op and
// ConcurrentWrites false when the inner sink lacks them, exactly as if the
// interfaces were absent.
type ownedSink struct {
	connectors.Sink
	conn io.Closer
}

var (
	_ connectors.Flusher        = (*ownedSink)(nil)
	_ connectors.ConcurrentSink = (*ownedSink)(nil)
)

func (s *ownedSink) Close(ctx context.Context) error {
	return errors.Join(s.Sink.Close(ctx), s.conn.Close())
}

func (s *ownedSink) Flush(ctx context.Context) error {
	if f, ok := s.Sink.(connectors.Flusher); ok {
		return f.Flush(ctx)
	}
	return nil
}

func (s *ownedSink) ConcurrentWrites() bool {
	cs, ok := s.Sink.(connectors.ConcurrentSink)
	return ok && cs.ConcurrentWrites()
}

// ownSource ties conn's lifetime to src (when conn has resources to release).
func ownSource(src connectors.Source, conn connectors.Connection) connectors.Source {
	if c, ok := conn.(io.Closer); ok {
		return &ownedSource{Source: src, conn: c}
	}
	return src
}

func ownSink(sink connectors.Sink, conn connectors.Connection) connectors.Sink {
	if c, ok := conn.(io.Closer); ok {
		return &ownedSink{Sink: sink, conn: c}
	}
	return sink
}

// closeConn releases a connection whose source or sink could not be made.
func closeConn(conn connectors.Connection) {
	if c, ok := conn.(io.Closer); ok {
		_ = c.Close()
	}
}
