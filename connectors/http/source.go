package httpconn

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/zclconf/go-cty/cty"

	"github.com/ferryhq/ferry/connectors"
)

// Pagination types.
const (
	PageNone   = "none"
	PageLink   = "link"
	PageCursor = "cursor"
	PageNumber = "page"
	PageOffset = "offset"
)

type sourceConfig struct {
	Path        *string           `cty:"path"`
	Query       map[string]string `cty:"query"`
	Records     *string           `cty:"records"`
	CursorParam *string           `cty:"cursor_param"`
	Pagination  *paginationConfig `cty:"pagination"`
}

type paginationConfig struct {
	Type        *string  `cty:"type"`
	CursorPath  *string  `cty:"cursor_path"`
	NextURLPath *string  `cty:"next_url_path"`
	CursorParam *string  `cty:"cursor_param"`
	PageParam   *string  `cty:"page_param"`
	SizeParam   *string  `cty:"size_param"`
	PageSize    *float64 `cty:"page_size"`
	Start       *float64 `cty:"start"`
}

// source reads a paginated JSON endpoint.
type source struct {
	conn        *Connection
	path        string
	query       url.Values
	records     []string // dotted path to the array; nil = the body is the array
	cursorParam string   // incremental

	paging      string
	cursorPath  []string
	nextURLPath []string
	pageCursor  string // the parameter the next-page token goes in
	pageParam   string
	sizeParam   string
	pageSize    int
	start       int

	// attempts is how often one page is tried before Read fails; backoff the
	// first wait between tries when the server names none.
	attempts int
	backoff  time.Duration
}

var _ connectors.Source = (*source)(nil)

// Source makes a source from the attributes of an integration's source block.
func (c *Connection) Source(cfg cty.Value) (connectors.Source, error) {
	var sc sourceConfig
	if err := decode(cfg, &sc, "source"); err != nil {
		return nil, err
	}
	s := &source{conn: c, path: str(sc.Path), query: url.Values{}, cursorParam: str(sc.CursorParam), paging: PageNone, attempts: 4, backoff: 500 * time.Millisecond}
	if s.path == "" {
		return nil, connectors.Permanent(errors.New(`http source: path is required: set path = "/items" (relative to the connection's base_url)`))
	}
	for k, v := range sc.Query {
		s.query.Set(k, v)
	}
	var err error
	if s.records, err = dotted(str(sc.Records), "records"); err != nil {
		return nil, connectors.Permanent(fmt.Errorf("http source %q: %w", s.path, err))
	}
	if p := sc.Pagination; p != nil {
		if err := s.configurePaging(p); err != nil {
			return nil, connectors.Permanent(fmt.Errorf("http source %q: pagination: %w", s.path, err))
		}
	}
	return s, nil
}

func (s *source) configurePaging(p *paginationConfig) error {
	s.paging = str(p.Type)
	num := func(f *float64, def int, name string, min int) (int, error) {
		if f == nil {
			return def, nil
		}
		if *f != math.Trunc(*f) || *f < float64(min) || *f > math.MaxInt32 {
			return 0, fmt.Errorf("%s must be a whole number of at least %d, not %v", name, min, *f)
		}
		return int(*f), nil
	}
	var err error
	if s.pageSize, err = num(p.PageSize, 0, "page_size", 1); err != nil {
		return err
	}
	s.sizeParam = str(p.SizeParam)
	if s.sizeParam != "" && s.pageSize == 0 {
		return errors.New("size_param needs page_size: set page_size = 100")
	}
	switch s.paging {
	case PageNone, PageLink:
	case PageCursor:
		if s.cursorPath, err = dotted(str(p.CursorPath), "cursor_path"); err != nil {
			return err
		}
		if s.nextURLPath, err = dotted(str(p.NextURLPath), "next_url_path"); err != nil {
			return err
		}
		if (s.cursorPath == nil) == (s.nextURLPath == nil) {
			return errors.New(`type "cursor" needs cursor_path (with cursor_param) or next_url_path, one of them`)
		}
		s.pageCursor = str(p.CursorParam)
		if s.cursorPath != nil && s.pageCursor == "" {
			return errors.New(`cursor_path needs cursor_param: the query parameter the next-page token is sent in`)
		}
	case PageNumber, PageOffset:
		def := 1
		s.pageParam = "page"
		if s.paging == PageOffset {
			def, s.pageParam = 0, "offset"
		}
		if p := str(p.PageParam); p != "" {
			s.pageParam = p
		}
		if s.start, err = num(p.Start, def, "start", 0); err != nil {
			return err
		}
	case "":
		return errors.New(`type is required: "link", "cursor", "page", "offset" or "none"`)
	default:
		return fmt.Errorf(`unknown type %q; use "link", "cursor", "page", "offset" or "none"`, s.paging)
	}
	return nil
}

// dotted splits a dotted path; "" is nil.
func dotted(p, name string) ([]string, error) {
	if p == "" {
		return nil, nil
	}
	segs := strings.Split(p, ".")
	for _, seg := range segs {
		if seg == "" {
			return nil, fmt.Errorf(`%s %q has an empty segment; write a dotted path such as "data.items"`, name, p)
		}
	}
	return segs, nil
}

// Read GETs page after page and emits every record, stopping when a page has
// no next page (link, cursor) or no records (page, offset, or fewer than
// page_size). With an incremental cursor, cursor_param carries it on every
// request the connector builds.
func (s *source) Read(ctx context.Context, req connectors.ReadRequest, emit func(connectors.Record) error) error {
	q := cloneValues(s.query)
	if s.cursorParam != "" && req.Cursor != "" {
		q.Set(s.cursorParam, req.Cursor)
	}
	if s.sizeParam != "" {
		q.Set(s.sizeParam, strconv.Itoa(s.pageSize))
	}
	counter := s.start
	if s.paging == PageNumber || s.paging == PageOffset {
		q.Set(s.pageParam, strconv.Itoa(counter))
	}
	next := withQuery(s.conn.resolvePath(s.path), q)
	host := hostOf(next)
	seen := map[string]bool{}
	for page := 1; ; page++ {
		if seen[next] {
			return connectors.Permanent(fmt.Errorf("http source GET %s: page %d repeats an earlier page's URL, so the read would never end; check the pagination settings against the API's documentation", s.conn.redact(next), page))
		}
		seen[next] = true
		body, header, err := s.get(ctx, next)
		if err != nil {
			return err
		}
		items, err := s.items(body)
		if err != nil {
			return connectors.Permanent(fmt.Errorf("http source GET %s (page %d): %w", s.conn.redact(next), page, err))
		}
		for i, raw := range items {
			if raw[0] != '{' {
				return connectors.Permanent(fmt.Errorf("http source GET %s (page %d): record %d is a JSON %s, not an object; point records at the array of objects", s.conn.redact(next), page, i+1, rawKind(raw)))
			}
			rec := connectors.Record{Raw: raw, Position: fmt.Sprintf("%s page %d record %d", s.path, page, i+1)}
			if err := emit(rec); err != nil {
				return err
			}
		}
		// Where is the next page?
		cur := next
		next = ""
		switch s.paging {
		case PageLink:
			if l := nextLink(header); l != "" {
				next = resolveRef(cur, l)
			}
		case PageCursor:
			if s.nextURLPath != nil {
				if v := scalarAt(body, s.nextURLPath); v != "" {
					next = resolveRef(cur, v)
				}
			} else if v := scalarAt(body, s.cursorPath); v != "" {
				q.Set(s.pageCursor, v)
				next = withQuery(s.conn.resolvePath(s.path), q)
			}
		case PageNumber, PageOffset:
			if len(items) == 0 || (s.pageSize > 0 && len(items) < s.pageSize) {
				break
			}
			if s.paging == PageNumber {
				counter++
			} else {
				counter += len(items)
			}
			q.Set(s.pageParam, strconv.Itoa(counter))
			next = withQuery(s.conn.resolvePath(s.path), q)
		}
		if next == "" {
			return nil
		}
		// The connection's credentials go on every request; a next page
		// elsewhere would hand them to a host the configuration never named.
		if h := hostOf(next); h != host {
			return connectors.Permanent(fmt.Errorf("http source GET %s (page %d): the next page is on another host, %s; ferry does not send the connection's credentials there; point base_url at that host if it is the API's", s.conn.redact(cur), page, h))
		}
	}
}

func hostOf(u string) string {
	if pu, err := url.Parse(u); err == nil {
		return strings.ToLower(pu.Host)
	}
	return ""
}

// get fetches one page, retrying transient failures a few times in-line so a
// long read does not restart from its first page for one hiccup.
func (s *source) get(ctx context.Context, u string) ([]byte, http.Header, error) {
	var last error
	for attempt := 0; attempt < s.attempts; attempt++ {
		if attempt > 0 {
			wait := connectors.RetryAfterOf(last)
			if wait == 0 {
				wait = s.backoff << (attempt - 1)
			}
			if wait > maxInlineWait {
				return nil, nil, last
			}
			if err := s.conn.sleep(ctx, wait); err != nil {
				return nil, nil, err
			}
		}
		resp, err := s.conn.do(ctx, http.MethodGet, u, nil, nil)
		if err == nil {
			body, rerr := readBody(resp)
			resp.Body.Close()
			if rerr == nil {
				return body, resp.Header, nil
			}
			err = connectors.Transient(fmt.Errorf("GET %s: reading the response: %w", s.conn.redact(u), rerr), 0)
		}
		if ctx.Err() != nil {
			return nil, nil, ctx.Err()
		}
		if connectors.CategoryOf(err) == connectors.CategoryPermanent {
			return nil, nil, fmt.Errorf("http source: %w", err)
		}
		last = err
	}
	return nil, nil, fmt.Errorf("http source, after %d attempts: %w", s.attempts, last)
}

func readBody(resp *http.Response) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxBodySize+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxBodySize {
		return nil, fmt.Errorf("response body is larger than %d MiB", maxBodySize>>20)
	}
	return b, nil
}

// items finds the records in a page's body. An empty body, a missing array
// (an empty last page often omits it) or null mean no records.
func (s *source) items(body []byte) ([]json.RawMessage, error) {
	body = body[skipSpace(body, 0):]
	if len(body) == 0 {
		return nil, nil
	}
	if !json.Valid(body) {
		_, err := connectors.DecodeJSON(body) // for where and what
		return nil, fmt.Errorf("response is not JSON (%v): %s", err, snippet(body))
	}
	v := body
	if s.records != nil {
		if body[0] != '{' && body[0] != 'n' {
			return nil, fmt.Errorf(`response is a JSON %s, not an object holding records %q; set records = "" if the body is the records array`, rawKind(body), strings.Join(s.records, "."))
		}
		if v = rawAt(body, s.records); v == nil {
			return nil, nil
		}
	}
	switch v[0] {
	case '[':
		return elements(v), nil
	case 'n':
		return nil, nil
	}
	if s.records == nil {
		return nil, fmt.Errorf(`response is a JSON %s, not an array; set records = "data" to the dotted path of the records array`, rawKind(v))
	}
	return nil, fmt.Errorf("records %q is a JSON %s, not an array; set records to the dotted path of the records array", strings.Join(s.records, "."), rawKind(v))
}

// scalarAt returns the string or number at path in a valid JSON document, or
// "" when it is missing, null, false or empty: the end of the pages.
func scalarAt(body []byte, path []string) string {
	v := rawAt(body, path)
	if v == nil {
		return ""
	}
	d, err := connectors.DecodeJSON(v)
	if err != nil {
		return ""
	}
	return scalar(d)
}

// scalar renders a cursor or URL value; "" for null, false, missing or empty.
func scalar(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case int64:
		return strconv.FormatInt(x, 10)
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	}
	return ""
}

func cloneValues(v url.Values) url.Values {
	out := make(url.Values, len(v))
	for k, vs := range v {
		out[k] = append([]string(nil), vs...)
	}
	return out
}

// withQuery sets q's parameters on u, keeping other parameters u already has.
func withQuery(u string, q url.Values) string {
	pu, err := url.Parse(u)
	if err != nil || len(q) == 0 {
		return u
	}
	have := pu.Query()
	for k, vs := range q {
		have[k] = vs
	}
	pu.RawQuery = have.Encode()
	return pu.String()
}

func resolveRef(base, ref string) string {
	b, err := url.Parse(base)
	if err != nil {
		return ref
	}
	r, err := url.Parse(ref)
	if err != nil {
		return ref
	}
	return b.ResolveReference(r).String()
}

// nextLink returns the rel="next" target of the Link headers (RFC 8288), or "".
func nextLink(h http.Header) string {
	for _, line := range h.Values("Link") {
		for _, part := range splitOutside(line, ',') {
			part = strings.TrimSpace(part)
			if !strings.HasPrefix(part, "<") {
				continue
			}
			end := strings.Index(part, ">")
			if end < 0 {
				continue
			}
			target := part[1:end]
			for _, param := range splitOutside(part[end+1:], ';') {
				k, v, ok := strings.Cut(strings.TrimSpace(param), "=")
				if !ok || !strings.EqualFold(strings.TrimSpace(k), "rel") {
					continue
				}
				for _, rel := range strings.Fields(strings.Trim(strings.TrimSpace(v), `"`)) {
					if strings.EqualFold(rel, "next") {
						return target
					}
				}
			}
		}
	}
	return ""
}

// splitOutside splits a Link header at sep (the commas between links, the
// semicolons between parameters) where it is not inside <...> or quotes.
func splitOutside(s string, sep byte) []string {
	var out []string
	inURL, inQuote, start := false, false, 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\' && inQuote:
			i++ // a quoted-pair
		case c == '<' && !inQuote:
			inURL = true
		case c == '>' && !inQuote:
			inURL = false
		case c == '"' && !inURL:
			inQuote = !inQuote
		case c == sep && !inURL && !inQuote:
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}
