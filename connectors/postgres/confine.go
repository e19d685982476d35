package postgres

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/ferryhq/ferry/connectors"
)

// A confined url (connectors.Env.Root set: a tenant's, on a ferry server)
// must make its connection alone. pgconn fills in what a url leaves out from
// this server's PG* environment variables and home directory (~/.pgpass,
// ~/.postgresql/), so a url without a password would log in with the
// server's; it cannot be told not to, and ferry may not change the process's
// environment, which other goroutines read. So ferry appends to the url, as
// query parameters, every such parameter the url leaves out, with the value
// of pgconn's own default: pgconn applies a URI's query over the rest of the
// url and over the environment.
//
// For that ferry must know what the url sets as pgconn reads it: a confined
// url is a URI, read by readConfinedURL as pgconn's parseURLSettings
// (pgconn/parse_url.go, after libpq's URI parser) reads it. Not by
// url.Parse, which differs: pgconn ends the user name and password at the
// first '@' before a '/' (a '?' in a password included), and takes a list
// of hosts and ports (postgres://h1:5432,h2:5433/db). The keyword=value form
// is refused: its quoting and escapes are more to mirror, and it says nothing
// a URI cannot.

// confinedDefaults are the parameters a confined url may leave out that
// pgconn would take from the environment (PGPORT, PGPASSWORD, PGSSLMODE, ...),
// each with the value that stands for pgconn's own default ("" for unset).
// host and user have none: pgconn's defaults are this server's Unix socket
// and OS user, so a confined url must name them.
var confinedDefaults = [][2]string{
	{"port", ""}, // 5432
	{"database", ""},
	{"password", ""},
	{"connect_timeout", "0"},
	{"sslmode", "prefer"},
	{"sslsni", "1"},
	{"sslnegotiation", ""},
	{"target_session_attrs", "any"},
	{"min_protocol_version", ""},
	{"max_protocol_version", ""},
	{"channel_binding", "prefer"},
	{"require_auth", ""},
}

// confinedServerParams are the parameters a confined url may leave to
// PGAPPNAME, PGOPTIONS and PGTZ. pgconn sends them to the database server,
// an empty one too, so they are dropped from the parsed config instead.
var confinedServerParams = []string{"application_name", "options", "timezone"}

// confinedForced are the parameters a confined url cannot set (they are not
// in confinedURLKeys) that pgconn would take from the environment or home
// directory: PGPASSFILE or ~/.pgpass, the client certificate of PGSSLCERT or
// ~/.postgresql/postgresql.crt, the CA of PGSSLROOTCERT or
// ~/.postgresql/root.crt, PGSSLPASSWORD, PGSSLCERTMODE. Empty, a file is not
// read.
var confinedForced = [][2]string{
	{"passfile", ""}, {"servicefile", ""}, {"sslcert", ""}, {"sslkey", ""},
	{"sslrootcert", ""}, {"sslpassword", ""}, {"sslcertmode", "allow"},
}

// confinedConnString returns the connection string ferry parses for a
// confined url: the url and, after it, every parameter of confinedForced
// and those of confinedDefaults it leaves out. It also returns the
// confinedServerParams the url leaves out, to drop from the parsed config.
func confinedConnString(raw string) (string, []string, error) {
	if os.Getenv("PGSERVICE") != "" {
		// A service's settings override the url's; none can be unset.
		return "", nil, connectors.Permanent(errors.New("postgres connection: this ferry server's environment sets PGSERVICE, whose settings pgx would apply to every tenant's connection; unset PGSERVICE where ferry serve runs"))
	}
	u, err := readConfinedURL(raw)
	if err != nil {
		return "", nil, connectors.Permanent(fmt.Errorf("postgres connection: %w", err))
	}
	if u.host == "" || slices.Contains(strings.Split(u.host, ","), "") {
		return "", nil, connectors.Permanent(errors.New("postgres connection: the url names no host (or an empty one in its list); name the database server's (postgres://user:password@db.example.com:5432/database): on a ferry server the url is not completed from the server's PGHOST"))
	}
	if u.user == "" {
		return "", nil, connectors.Permanent(errors.New("postgres connection: the url names no user; name it (postgres://user:password@db.example.com:5432/database): on a ferry server the url is not completed from the server's PGUSER or OS user"))
	}

	add := url.Values{}
	for _, p := range confinedForced {
		add.Set(p[0], p[1])
	}
	for _, d := range confinedDefaults {
		if !u.set[d[0]] {
			add.Set(d[0], d[1])
		}
	}
	var drop []string
	for _, k := range confinedServerParams {
		if !u.set[k] {
			drop = append(drop, k)
		}
	}
	// pgconn reads a '+' as itself, not as a space (QueryEscape has written
	// a '+' of a value as %2B).
	return raw + u.sep + strings.ReplaceAll(add.Encode(), "+", "%20"), drop, nil
}

// confinedURL is what a confined url sets, as pgconn reads it.
type confinedURL struct {
	set map[string]bool // the parameters it sets, by pgconn's names (database, not dbname)
	// host and user are their decoded values, "" when unset: pgconn takes an
	// empty one as unset, and would use the server's Unix socket and OS user.
	host, user string
	// sep goes between the url and parameters appended to it: "?" without a
	// query, "" after an empty one or a trailing '&' (pgconn refuses an empty
	// parameter within a query), and "&" otherwise.
	sep string
}

// readConfinedURL reads a url as pgconn's parseURLSettings does. Where
// pgconn would refuse the url anyway it may not say so: the parse of the
// connection string built from it does. It refuses parameters outside
// confinedURLKeys.
func readConfinedURL(raw string) (*confinedURL, error) {
	p, ok := strings.CutPrefix(raw, "postgresql://")
	if !ok {
		p, ok = strings.CutPrefix(raw, "postgres://")
	}
	if !ok {
		// Never quote the url: it may hold a password.
		return nil, errors.New("on a ferry server the url must be a URL, postgres://user:password@host:5432/database?sslmode=require (percent-encode a special character, @ as %40), not keyword=value settings (host=... user=...)")
	}
	u := &confinedURL{set: map[string]bool{}}
	var err error

	if i := strings.IndexAny(p, "@/"); i >= 0 && p[i] == '@' {
		user, password, _ := strings.Cut(p[:i], ":")
		if u.user, err = decodeURIPart(user); err != nil {
			return nil, fmt.Errorf("invalid url: its user name: %w", err)
		}
		u.set["password"] = password != ""
		p = p[i+1:]
	}

	// Hosts and ports, each list with a ',' for every ',' in the url.
	var hosts, ports strings.Builder
	for {
		if strings.HasPrefix(p, "[") {
			end := strings.IndexByte(p, ']')
			if end < 0 {
				return nil, errors.New(`invalid url: no "]" ends an IPv6 host address`)
			}
			hosts.WriteString(p[1:end])
			p = p[end+1:]
		} else {
			i := indexAnyOrLen(p, ":/?,")
			hosts.WriteString(p[:i])
			p = p[i:]
		}
		if rest, ok := strings.CutPrefix(p, ":"); ok {
			i := indexAnyOrLen(rest, "/?,")
			ports.WriteString(rest[:i])
			p = rest[i:]
		}
		rest, ok := strings.CutPrefix(p, ",")
		if !ok {
			break
		}
		p = rest
		hosts.WriteByte(',')
		ports.WriteByte(',')
	}
	if u.host, err = decodeURIPart(hosts.String()); err != nil {
		return nil, fmt.Errorf("invalid url: its host: %w", err)
	}
	u.set["port"] = ports.Len() > 0

	if rest, ok := strings.CutPrefix(p, "/"); ok {
		var database string
		database, rest, ok = strings.Cut(rest, "?")
		u.set["database"] = database != ""
		p = ""
		if ok {
			p = "?" + rest
		}
	}

	query, ok := strings.CutPrefix(p, "?")
	if !ok {
		if p != "" {
			// After "[::1]", pgconn takes only ':', '/', '?' or ','.
			return nil, errors.New(`invalid url: an IPv6 host address in [brackets] is followed by ":port", "/database", "?parameters" or ",", another host`)
		}
		u.sep = "?"
		return u, nil
	}
	u.sep = "&"
	if query == "" || strings.HasSuffix(query, "&") {
		u.sep = ""
	}
	for query != "" {
		var pair string
		pair, query, _ = strings.Cut(query, "&")
		rawKey, rawValue, ok := strings.Cut(pair, "=")
		if !ok || strings.Contains(rawValue, "=") {
			return nil, errors.New("invalid url: a part of its query is not name=value; percent-encode '&', '=' and '%' in a value (%26, %3D, %25)")
		}
		key, err := decodeURIPart(rawKey)
		if err != nil {
			return nil, fmt.Errorf("invalid url: a parameter name in its query: %w", err)
		}
		if key == "dbname" {
			key = "database"
		}
		switch key {
		case "ssl":
			// ssl=true is pgconn's URI spelling of sslmode=require. It passes
			// any other value on to the database server as the setting "ssl",
			// which the server refuses at connect ("cannot be changed now").
			if v, err := decodeURIPart(rawValue); err != nil || v != "true" {
				return nil, errors.New(`the url's parameter "ssl" is not allowed on a ferry server but as ssl=true (sslmode=require); for a connection without TLS write sslmode=disable`)
			}
			key = "sslmode"
		case "host":
			u.host, err = decodeURIPart(rawValue)
		case "user":
			u.user, err = decodeURIPart(rawValue)
		}
		if err != nil {
			return nil, fmt.Errorf("invalid url: its parameter %s: %w", key, err)
		}
		if !slices.Contains(confinedURLKeys, key) {
			return nil, fmt.Errorf("the url's parameter %q is not allowed on a ferry server: the url may not name files of the server (sslrootcert, sslcert, sslkey, passfile, service, servicefile) nor set sslcertmode (it can have no client certificate); set database parameters with options=-c%%20name%%3Dvalue; the parameters allowed are %s",
				key, strings.Join(confinedURLKeys, ", "))
		}
		u.set[key] = true
	}
	return u, nil
}

func indexAnyOrLen(s, chars string) int {
	if i := strings.IndexAny(s, chars); i >= 0 {
		return i
	}
	return len(s)
}

// decodeURIPart decodes a part of a url as pgconn's uriDecode does: spaces
// around it are dropped, a space within it is refused (%20 is one), and %00.
// Its errors do not quote the part, which may be a password.
func decodeURIPart(raw string) (string, error) {
	raw = strings.Trim(raw, " ")
	if strings.Contains(raw, " ") {
		return "", errors.New("a space in it is written %20")
	}
	s, err := url.PathUnescape(raw)
	if err != nil || strings.Contains(s, "\x00") {
		return "", errors.New("it has a '%' not followed by two hexadecimal digits, or %00; write a '%' as %25")
	}
	return s, nil
}

// asURL makes a parse error of the connection string ferry built quote the
// url it was given instead (redacted, as pgconn does).
func asURL(err error, url string) error {
	var pe *pgconn.ParseConfigError
	if errors.As(err, &pe) {
		pe.ConnString = url
	}
	return err
}
