package engine

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ferryhq/ferry/connectors"
)

// deafSink never answers a call until released, whatever its context says.
type deafSink struct{ release chan struct{} }

func (s deafSink) Write(_ context.Context, ws []connectors.Write) []error {
	<-s.release
	return make([]error, len(ws))
}

func (deafSink) Close(context.Context) error { return nil }

// An in-memory run bounds each target call like a durable one: a target
// that ignores its cancelled context is abandoned after the grace period and
// its records fail transiently, so the run ends instead of hanging.
func TestRunAbandonsATargetThatDoesNotReturn(t *testing.T) {
	cfg := productConfig()
	cfg.Integrations["products_to_erp"].Target.Timeout = 50 * time.Millisecond
	p := mustCompile(t, cfg)
	sink := deafSink{release: make(chan struct{})}
	defer close(sink.release)
	src := records(2, func(i int) string {
		return fmt.Sprintf(`{"id": %d, "title": "T", "variants": [{"sku": "S%d"}]}`, i, i)
	})
	noSleep := func(context.Context, time.Duration) error { return nil }
	res, err := p.Run(context.Background(), "products_to_erp", RunOptions{Source: src, Sink: sink, Sleep: noSleep, SinkTimeout: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if res.Counts.Failed != 2 || len(res.Failures) == 0 {
		t.Fatalf("counts %+v, want both records failed", res.Counts)
	}
	if msg := res.Failures[0].Message; !strings.Contains(msg, "within the sink timeout (50ms)") || res.Failures[0].Category != connectors.CategoryTransient {
		t.Errorf("failure %+v", res.Failures[0])
	}
}
