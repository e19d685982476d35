// Package postgres is ferry's PostgreSQL connector: it reads a table or a query,
// incrementally by a cursor column with a key column as tie-breaker, streaming
// rows through a server-side cursor; and it inserts, upserts and deletes rows in
// one transaction per batch, failing only the records that violate a constraint.
//
//	connection "db" {
//	  type            = "postgres"
//	  url             = secret("db_url")   # postgres://user:pass@host:5432/db?sslmode=require
//	  max_connections = 4                  # pool size (default 4)
//	}
//
//	integration "orders" {
//	  source {
//	    connection    = connection.db
//	    table         = "public.orders"                 # or: query = "SELECT ... WHERE updated_at >= $1"
//	    columns       = ["id", "status", "updated_at"]  # default: all columns
//	    cursor_column = "updated_at"                    # incremental (with the integration's cursor)
//	    key_column    = "id"                            # tie-breaker among equal cursor values
//	    batch_rows    = 1000                            # rows fetched per round trip (default 1000)
//	  }
//	  target {
//	    connection  = connection.db
//	    table       = "public.orders_copy"
//	    key_columns = ["id"]          # required for upsert, update and delete
//	    columns     = ["id", "status"] # optional whitelist; default: the record's keys that are columns
//	    batch_size  = 500              # rows per statement (default 500)
//	  }
//	}
package postgres

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/zclconf/go-cty/cty"

	"github.com/ferryhq/ferry/connectors"
)

// Type is the connection type of this connector.
const Type = "postgres"

const (
	defaultMaxConnections = 4
	defaultBatchRows      = 1000
	defaultBatchSize      = 500
	// maxParams is PostgreSQL's limit of bind parameters per statement.
	maxParams = 65535
)

// ConnectionSpec is the schema of a postgres connection block's own attributes.
var ConnectionSpec = hcldec.ObjectSpec{
	"url":             &hcldec.AttrSpec{Name: "url", Type: cty.String, Required: true},
	"max_connections": &hcldec.AttrSpec{Name: "max_connections", Type: cty.Number},
}

// SourceSpec is the schema of the postgres connector's attributes in a source block.
var SourceSpec = hcldec.ObjectSpec{
	"table":         &hcldec.AttrSpec{Name: "table", Type: cty.String},
	"columns":       &hcldec.AttrSpec{Name: "columns", Type: cty.List(cty.String)},
	"query":         &hcldec.AttrSpec{Name: "query", Type: cty.String},
	"cursor_column": &hcldec.AttrSpec{Name: "cursor_column", Type: cty.String},
	"key_column":    &hcldec.AttrSpec{Name: "key_column", Type: cty.String},
	"batch_rows":    &hcldec.AttrSpec{Name: "batch_rows", Type: cty.Number},
}

// TargetSpec is the schema of the postgres connector's attributes in a target block.
var TargetSpec = hcldec.ObjectSpec{
	"table":       &hcldec.AttrSpec{Name: "table", Type: cty.String, Required: true},
	"key_columns": &hcldec.AttrSpec{Name: "key_columns", Type: cty.List(cty.String)},
	"columns":     &hcldec.AttrSpec{Name: "columns", Type: cty.List(cty.String)},
	"batch_size":  &hcldec.AttrSpec{Name: "batch_size", Type: cty.Number},
}

func init() {
	connectors.Register(&connectors.Connector{
		Type:        Type,
		Description: "PostgreSQL: read tables or queries incrementally; insert, upsert and delete rows",
		Connection:  ConnectionSpec,
		Source:      SourceSpec,
		Target:      TargetSpec,
		Open:        Open,
	})
}

type connectionConfig struct {
	URL            *string `cty:"url"`
	MaxConnections *int    `cty:"max_connections"`
}

type sourceConfig struct {
	Table        *string  `cty:"table"`
	Columns      []string `cty:"columns"`
	Query        *string  `cty:"query"`
	CursorColumn *string  `cty:"cursor_column"`
	KeyColumn    *string  `cty:"key_column"`
	BatchRows    *int     `cty:"batch_rows"`
}

type targetConfig struct {
	Table      *string  `cty:"table"`
	KeyColumns []string `cty:"key_columns"`
	Columns    []string `cty:"columns"`
	BatchSize  *int     `cty:"batch_size"`
}

// Connection is an opened postgres connection: a pool of at most
// max_connections connections, opened lazily.
type Connection struct {
	Pool *pgxpool.Pool
}

var (
	_ connectors.Connection = (*Connection)(nil)
	_ connectors.Tester     = (*Connection)(nil)
)

// Open opens a postgres connection from its decoded attributes. It does not
// connect; the pool dials on first use and Test checks reachability.
func Open(env connectors.Env, cfg cty.Value) (connectors.Connection, error) {
	var c connectionConfig
	if err := decode(cfg, &c, "connection"); err != nil {
		return nil, err
	}
	url := str(c.URL)
	if url == "" {
		return nil, connectors.Permanent(errors.New(`postgres connection: url is required: set url = secret("db_url") (postgres://user:password@host:5432/database)`))
	}
	connString, serverEnvParams := url, []string(nil)
	if env.Root != "" {
		var err error
		if connString, serverEnvParams, err = confinedConnString(url); err != nil {
			return nil, err
		}
	}
	pc, err := pgxpool.ParseConfig(connString)
	if err != nil {
		// pgconn redacts the password in parse errors.
		return nil, connectors.Permanent(fmt.Errorf("postgres connection: invalid url: %w", asURL(err, url)))
	}
	for _, k := range serverEnvParams {
		delete(pc.ConnConfig.RuntimeParams, k)
	}
	if env.Root != "" {
		for _, h := range append([]*pgconn.FallbackConfig{{Host: pc.ConnConfig.Host, Port: pc.ConnConfig.Port}}, pc.ConnConfig.Fallbacks...) {
			if network, _ := pgconn.NetworkAddress(h.Host, h.Port); network == "unix" {
				return nil, connectors.Permanent(fmt.Errorf("postgres connection: the url leads to the Unix socket %s of this server; name the database server's host (postgres://user:password@db.example.com:5432/database): on a ferry server a connection goes over TCP", h.Host))
			}
		}
	}
	if env.Net != nil {
		// pgx resolves the host and dials each address (fallbacks and cancel
		// requests too) with DialFunc: the policy sees the address dialled.
		pc.ConnConfig.DialFunc = env.Net.Dialer(&net.Dialer{Timeout: pc.ConnConfig.ConnectTimeout}).DialContext
	}
	maxConns := defaultMaxConnections
	if c.MaxConnections != nil {
		if *c.MaxConnections < 1 {
			return nil, connectors.Permanent(fmt.Errorf("postgres connection: max_connections must be at least 1, got %d", *c.MaxConnections))
		}
		maxConns = *c.MaxConnections
	}
	pc.MaxConns = int32(maxConns)
	pc.MinConns = 0
	if _, ok := pc.ConnConfig.RuntimeParams["application_name"]; !ok {
		pc.ConnConfig.RuntimeParams["application_name"] = "ferry"
	}
	pool, err := pgxpool.NewWithConfig(context.Background(), pc)
	if err != nil {
		return nil, connectors.Permanent(fmt.Errorf("postgres connection: %w", err))
	}
	return &Connection{Pool: pool}, nil
}

// confinedURLKeys are the url parameters of a confined connection
// (connectors.Env.Root set: a tenant's, on a ferry server). They leave out
// those that name files of the host, which pgx would read: sslrootcert,
// sslcert, sslkey (another tenant's client key, say), passfile, service and
// servicefile; those pgx does not know, which it would pass on to the
// database server (options = "-c name=value" sets any server parameter);
// sslcertmode, which is for the client certificate a confined url cannot
// have (ferry sets it to allow, against PGSSLCERTMODE, and would override
// the url's without a word); and ssl, but for ssl=true (readConfinedURL's
// sslmode=require): pgconn sends another value to the database server,
// which refuses it when the connection opens.
var confinedURLKeys = []string{
	"host", "port", "database", "dbname", "user", "password",
	"sslmode", "sslsni", "sslnegotiation",
	"connect_timeout", "target_session_attrs", "application_name", "options",
	"search_path", "timezone", "statement_timeout", "lock_timeout", "idle_in_transaction_session_timeout",
	"channel_binding", "require_auth", "min_protocol_version", "max_protocol_version", "krbsrvname", "krbspn",
	"statement_cache_capacity", "description_cache_capacity", "default_query_exec_mode",
	"pool_max_conns", "pool_min_conns", "pool_min_idle_conns", "pool_max_conn_lifetime",
	"pool_max_conn_idle_time", "pool_health_check_period", "pool_max_conn_lifetime_jitter", "pool_ping_timeout",
}

// Close closes the pool.
func (c *Connection) Close() error {
	c.Pool.Close()
	return nil
}

// Test checks that the database answers.
func (c *Connection) Test(ctx context.Context) error {
	var one int
	if err := c.Pool.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil {
		return classify(fmt.Errorf("postgres connection: %w", err))
	}
	return nil
}

// Source makes a source from the attributes of an integration's source block.
func (c *Connection) Source(cfg cty.Value) (connectors.Source, error) {
	var sc sourceConfig
	if err := decode(cfg, &sc, "source"); err != nil {
		return nil, err
	}
	s := &Source{
		pool:      c.Pool,
		table:     str(sc.Table),
		columns:   sc.Columns,
		query:     str(sc.Query),
		cursorCol: str(sc.CursorColumn),
		keyCol:    str(sc.KeyColumn),
		batchRows: defaultBatchRows,
	}
	switch {
	case s.table == "" && s.query == "":
		return nil, connectors.Permanent(errors.New(`postgres source: set table = "schema.name" or query = "SELECT ..."`))
	case s.table != "" && s.query != "":
		return nil, connectors.Permanent(errors.New("postgres source: set table or query, not both"))
	case s.query != "" && len(s.columns) > 0:
		return nil, connectors.Permanent(errors.New("postgres source: columns applies to table only; select the columns in the query"))
	}
	if sc.BatchRows != nil {
		if *sc.BatchRows < 1 {
			return nil, connectors.Permanent(fmt.Errorf("postgres source: batch_rows must be at least 1, got %d", *sc.BatchRows))
		}
		s.batchRows = *sc.BatchRows
	}
	if s.cursorCol != "" && s.keyCol == "" {
		return nil, connectors.Permanent(errors.New("postgres source: cursor_column needs key_column, a unique column that orders rows sharing a cursor value"))
	}
	return s, nil
}

// Sink makes a sink from the attributes of an integration's target block.
func (c *Connection) Sink(cfg cty.Value) (connectors.Sink, error) {
	var tc targetConfig
	if err := decode(cfg, &tc, "target"); err != nil {
		return nil, err
	}
	s := &Sink{
		pool:      c.Pool,
		table:     str(tc.Table),
		keys:      tc.KeyColumns,
		whitelist: tc.Columns,
		batchSize: defaultBatchSize,
	}
	if s.table == "" {
		return nil, connectors.Permanent(errors.New(`postgres target: table is required: set table = "schema.name"`))
	}
	if tc.BatchSize != nil {
		if *tc.BatchSize < 1 {
			return nil, connectors.Permanent(fmt.Errorf("postgres target: batch_size must be at least 1, got %d", *tc.BatchSize))
		}
		s.batchSize = *tc.BatchSize
	}
	return s, nil
}

// ident quotes a possibly schema-qualified name ("public.orders").
func ident(name string) string {
	return pgx.Identifier(strings.Split(name, ".")).Sanitize()
}

func quote(col string) string { return pgx.Identifier{col}.Sanitize() }

func decode(cfg cty.Value, into any, what string) error {
	return connectors.DecodeConfig(cfg, into, "postgres "+what)
}

func str(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}
