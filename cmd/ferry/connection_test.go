package main

import (
	"errors"

	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/rogpeppe/go-internal/testscript"
	"github.com/zclconf/go-cty/cty"

	"github.com/ferryhq/ferry/connectors"
	"github.com/ferryhq/ferry/connectors/shopify/shopifytest"
)

// Every connector ferry ships has a connection check; "nocheck" has none, so
// that testdata/script/connection_test.txtar can show what ferry connection
// test says about such a connector.
func init() {
	connectors.Register(&connectors.Connector{
		Type:        "nocheck",
		Description: "test connector without a connection check",
		Connection:  hcldec.ObjectSpec{},
		Source:      hcldec.ObjectSpec{},
		Open: func(connectors.Env, cty.Value) (connectors.Connection, error) {
			return noCheckConnection{}, nil
		},
	})
}

type noCheckConnection struct{}

func (noCheckConnection) Source(cty.Value) (connectors.Source, error) {
	return nil, errors.New("nocheck reads nothing")
}

func (noCheckConnection) Sink(cty.Value) (connectors.Sink, error) {
	return nil, errors.New("nocheck writes nothing")
}

// cmdFakeShopify starts a fake Shopify Admin API (shopifytest) for the rest
// of the script and sets $SHOPIFY_URL to its base URL: fake-shopify.
func cmdFakeShopify(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 0 {
		ts.Fatalf("usage: fake-shopify")
	}
	shop := shopifytest.New(shopifytest.Options{})
	ts.Defer(shop.Close)
	ts.Setenv("SHOPIFY_URL", shop.URL)
}
