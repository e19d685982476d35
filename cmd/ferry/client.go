package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/ferryhq/ferry/lang"
	"github.com/hashicorp/hcl/v2"
)

// serverFlags say which ferry server a command talks to, and with which key.
type serverFlags struct {
	server string
	apiKey string
}

func (f *serverFlags) declare(fs *flag.FlagSet) {
	fs.StringVar(&f.server, "server", "", "URL of the ferry server (default: $FERRY_SERVER)")
	fs.StringVar(&f.apiKey, "api-key", "", "API key of the tenant (default: $FERRY_API_KEY, which keeps it out of the process list)")
}

// client returns an API client for the server and key of the flags or the
// environment.
func (f *serverFlags) client() (*apiClient, error) {
	server := f.server
	if server == "" {
		server = os.Getenv("FERRY_SERVER")
	}
	key := f.apiKey
	if key == "" {
		key = os.Getenv("FERRY_API_KEY")
	}
	if server == "" {
		return nil, errors.New("no ferry server: set FERRY_SERVER (e.g. export FERRY_SERVER=http://127.0.0.1:8080) or pass --server; for a local one, run: ferry serve --dev DIR")
	}
	if !strings.Contains(server, "://") {
		server = "http://" + server
	}
	u, err := url.Parse(server)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("invalid server URL %q: write it as http://host:port or https://host", server)
	}
	if key == "" {
		return nil, fmt.Errorf("no API key for %s: set FERRY_API_KEY (or pass --api-key); ferry serve --dev prints one", u.Redacted())
	}
	u.Path = strings.TrimRight(u.Path, "/")
	return &apiClient{base: u, key: key, hc: &http.Client{Timeout: 2 * time.Minute}}, nil
}

// mustURL parses a URL known to be valid.
func mustURL(s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		panic(err)
	}
	return u
}

// apiClient calls the ferry REST API.
type apiClient struct {
	base *url.URL
	key  string
	hc   *http.Client
}

// problem is an application/problem+json error body.
type problem struct {
	Type   string          `json:"type"`
	Title  string          `json:"title"`
	Status int             `json:"status"`
	Detail string          `json:"detail"`
	Errors json.RawMessage `json:"errors,omitempty"`
}

// apiError is an error answer of the server.
type apiError struct {
	method, path string
	status       int
	problem      problem
}

func (e *apiError) Error() string {
	msg := e.problem.Detail
	if msg == "" {
		msg = e.problem.Title
	}
	if msg == "" {
		msg = http.StatusText(e.status)
	}
	switch e.status {
	case http.StatusUnauthorized:
		return fmt.Sprintf("the server refused the API key (%s): check FERRY_API_KEY or --api-key", msg)
	case http.StatusForbidden:
		return fmt.Sprintf("the API key may not do this: %s", msg)
	}
	return fmt.Sprintf("%s %s: %d %s: %s", e.method, e.path, e.status, http.StatusText(e.status), msg)
}

// statusOf returns the HTTP status of an apiError (0 for other errors).
func statusOf(err error) int {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae.status
	}
	return 0
}

// do sends a request with a JSON body (nil: none) and decodes a JSON answer
// into out (nil: discard). It returns the answer's headers. Non-2xx answers
// are *apiError.
func (c *apiClient) do(ctx context.Context, method, path string, header http.Header, body, out any) (http.Header, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	u := *c.base
	p, query, _ := strings.Cut(path, "?")
	u.Path += p
	u.RawQuery = query
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return nil, err
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	req.Header.Set("Authorization", "ApiKey "+c.key)
	req.Header.Set("Accept", "application/json, application/problem+json")
	req.Header.Set("User-Agent", "ferry/"+version)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		var ne net.Error
		var oe *net.OpError
		if errors.As(err, &oe) || (errors.As(err, &ne) && ne.Timeout()) {
			return nil, fmt.Errorf("cannot reach the ferry server at %s (%v): is ferry serve running there?", c.base.Redacted(), rootCause(err))
		}
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 256<<20))
	if err != nil {
		return nil, fmt.Errorf("%s %s: reading the answer: %w", method, path, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		ae := &apiError{method: method, path: path, status: resp.StatusCode}
		if json.Unmarshal(data, &ae.problem) != nil {
			ae.problem = problem{Title: resp.Status, Detail: oneLine(string(data), 200)}
		}
		return resp.Header, ae
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return nil, fmt.Errorf("%s %s: the server's answer is not the JSON expected (%v); is %s a ferry server?", method, path, err, c.base.Redacted())
		}
	}
	return resp.Header, nil
}

func rootCause(err error) error {
	for {
		u := errors.Unwrap(err)
		if u == nil {
			return err
		}
		err = u
	}
}

// etagRevision reads a configuration revision from an ETag ("3"), -1 if none.
func etagRevision(h http.Header) int {
	n, err := strconv.Atoi(strings.Trim(strings.TrimPrefix(h.Get("ETag"), "W/"), `"`))
	if err != nil {
		return -1
	}
	return n
}

// remoteConfig is GET /v1/config.
type remoteConfig struct {
	Revision int               `json:"revision"`
	Files    map[string]string `json:"files"`
}

func (c *apiClient) config(ctx context.Context) (*remoteConfig, error) {
	var rc remoteConfig
	if _, err := c.do(ctx, http.MethodGet, "/v1/config", nil, nil, &rc); err != nil {
		return nil, err
	}
	if rc.Files == nil {
		rc.Files = map[string]string{}
	}
	return &rc, nil
}

// writeAPIError prints an error of the server. Configuration diagnostics
// (422) are printed like local ones, with snippets from the local files when
// the server's file names match them (local maps the server's file name to
// the local path, files are the parsed local files).
func writeAPIError(c *ctx, err error, local map[string]string, files map[string]*hcl.File) int {
	var ae *apiError
	if !errors.As(err, &ae) || len(ae.problem.Errors) == 0 {
		return c.errorf("%v", err)
	}
	var raw []struct {
		Severity string `json:"severity"`
		Summary  string `json:"summary"`
		Detail   string `json:"detail"`
		Range    *struct {
			Filename string `json:"filename"`
			Start    struct {
				Line   int `json:"line"`
				Column int `json:"column"`
			} `json:"start"`
			End struct {
				Line   int `json:"line"`
				Column int `json:"column"`
			} `json:"end"`
		} `json:"range"`
	}
	if json.Unmarshal(ae.problem.Errors, &raw) != nil {
		return c.errorf("%v", err)
	}
	var diags hcl.Diagnostics
	for _, r := range raw {
		d := &hcl.Diagnostic{Severity: hcl.DiagError, Summary: r.Summary, Detail: r.Detail}
		if r.Severity == "warning" {
			d.Severity = hcl.DiagWarning
		}
		if r.Range != nil {
			name := r.Range.Filename
			if p, ok := local[name]; ok {
				name = p
			}
			rng := hcl.Range{Filename: name,
				Start: hcl.Pos{Line: r.Range.Start.Line, Column: r.Range.Start.Column},
				End:   hcl.Pos{Line: r.Range.End.Line, Column: r.Range.End.Column}}
			if f := files[name]; f != nil {
				rng.Start.Byte = byteOffset(f.Bytes, rng.Start)
				rng.End.Byte = byteOffset(f.Bytes, rng.End)
			}
			d.Subject = &rng
		}
		diags = append(diags, d)
	}
	fmt.Fprintf(c.stderr, "Error: the server refused the configuration: %s\n\n", ae.problem.Detail)
	lang.WriteDiagnostics(c.stderr, files, diags, false)
	return 1
}

// byteOffset converts a line and column (1-based, in characters) of src to
// a byte offset, so that diagnostics received as JSON get their snippets.
func byteOffset(src []byte, p hcl.Pos) int {
	line, off := 1, 0
	for line < p.Line && off < len(src) {
		i := bytes.IndexByte(src[off:], '\n')
		if i < 0 {
			return len(src)
		}
		off += i + 1
		line++
	}
	for col := 1; col < p.Column && off < len(src) && src[off] != '\n'; col++ {
		_, n := utf8.DecodeRune(src[off:])
		off += n
	}
	return off
}
