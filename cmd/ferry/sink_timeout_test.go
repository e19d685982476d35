package main

import (
	"context"
	"errors"
	"time"

	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/zclconf/go-cty/cty"

	"github.com/ferryhq/ferry/connectors"
)

// The "hang" connector is a target whose calls never answer: only the
// runtime's limit (a target's timeout, --sink-timeout) ends them. See
// testdata/script/run_sink_timeout.txtar.
func init() {
	connectors.Register(&connectors.Connector{
		Type:        "hang",
		Description: "test connector: a target that never answers",
		Connection:  hcldec.ObjectSpec{},
		Target:      hcldec.ObjectSpec{},
		Open: func(connectors.Env, cty.Value) (connectors.Connection, error) {
			return hangConnection{}, nil
		},
	})
}

type hangConnection struct{}

func (hangConnection) Source(cty.Value) (connectors.Source, error) {
	return nil, errors.New("hang reads nothing")
}

func (hangConnection) Sink(cty.Value) (connectors.Sink, error) { return hangSink{}, nil }

type hangSink struct{}

func (hangSink) Write(ctx context.Context, ws []connectors.Write) []error {
	errs := make([]error, len(ws))
	err := ctx.Err()
	select {
	case <-ctx.Done():
		err = ctx.Err()
	case <-time.After(time.Minute): // a script without the limit fails, not hangs
		err = connectors.Permanent(errors.New("the call was not cancelled"))
	}
	for i := range errs {
		errs[i] = err
	}
	return errs
}

func (hangSink) Close(context.Context) error { return nil }
