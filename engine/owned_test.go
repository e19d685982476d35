package engine

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/zclconf/go-cty/cty"

	"github.com/ferryhq/ferry/connectors"
	"github.com/ferryhq/ferry/lang"
)

// closingConn holds a resource (as a postgres pool does): it counts opens
// and closes, and it can refuse to make a source.
type closingConn struct{ failSource bool }

var closingOpened, closingClosed atomic.Int64

func (c closingConn) Source(cty.Value) (connectors.Source, error) {
	if c.failSource {
		return nil, connectors.Permanent(errBadSource)
	}
	return records(3, product), nil
}
func (closingConn) Sink(cty.Value) (connectors.Sink, error) { return &MemorySink{}, nil }
func (closingConn) Close() error {
	closingClosed.Add(1)
	return nil
}

var errBadSource = errors.New("this source cannot be made")

func init() {
	connectors.Register(&connectors.Connector{
		Type: "enginetest_closing",
		Open: func(_ connectors.Env, cfg cty.Value) (connectors.Connection, error) {
			closingOpened.Add(1)
			return closingConn{failSource: cfg.GetAttr("fail").True()}, nil
		},
	})
}

// Every connection a run opens is closed when the run ends, also when the
// source or sink could not be made: a pool left open per scheduled run
// would exhaust the database's connections.
func TestRunClosesTheConnectionsItOpens(t *testing.T) {
	for _, fail := range []bool{false, true} {
		closingOpened.Store(0)
		closingClosed.Store(0)
		cfg := productConfig()
		conn := cty.ObjectVal(map[string]cty.Value{"fail": cty.BoolVal(fail)})
		cfg.Connections["shop"] = &lang.Connection{Name: "shop", Type: "enginetest_closing", Config: conn}
		cfg.Connections["erp"] = &lang.Connection{Name: "erp", Type: "enginetest_closing", Config: conn}
		p := mustCompile(t, cfg)
		res, err := p.Run(context.Background(), "products_to_erp", RunOptions{})
		if fail != (err != nil) {
			t.Fatalf("fail=%t: %v", fail, err)
		}
		if !fail && res.Counts.Success != 3 {
			t.Fatalf("counts %+v", res.Counts)
		}
		if o, c := closingOpened.Load(), closingClosed.Load(); o == 0 || o != c {
			t.Fatalf("fail=%t: %d connections opened, %d closed", fail, o, c)
		}
	}
}

// The wrapped sink keeps the optional interfaces of the sink it owns.
func TestOwnedSinkKeepsOptionalInterfaces(t *testing.T) {
	s := ownSink(&MemorySink{}, closingConn{})
	cs, ok := s.(connectors.ConcurrentSink)
	inner, innerOK := connectors.Sink(&MemorySink{}).(connectors.ConcurrentSink)
	if !ok || (innerOK && cs.ConcurrentWrites() != inner.ConcurrentWrites()) || (!innerOK && cs.ConcurrentWrites()) {
		t.Fatalf("ConcurrentWrites changed by the wrapper")
	}
	if err := s.(connectors.Flusher).Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
}
