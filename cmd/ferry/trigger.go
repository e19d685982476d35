package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"time"
)

// maxServerWait is the longest the server waits in one request
// (apiserver.MaxSyncWait); longer --wait values poll.
const maxServerWait = 5 * time.Minute

// syncEvent is the server's answer about a sync event (apiserver.RunInfo).
type syncEvent struct {
	CorrelationID string `json:"correlationId"`
	Integration   string `json:"integration"`
	Revision      string `json:"revision,omitempty"`
	Status        string `json:"status"`
	Outcome       string `json:"outcome,omitempty"`
	Counts        struct {
		Total   int64 `json:"total"`
		Success int64 `json:"success"`
		Failed  int64 `json:"failed"`
		Skipped int64 `json:"skipped"`
	} `json:"counts"`
	Started *time.Time      `json:"started,omitempty"`
	Ended   *time.Time      `json:"ended,omitempty"`
	Error   string          `json:"error,omitempty"`
	Links   json.RawMessage `json:"links,omitempty"`
	raw     json.RawMessage
}

func init() {
	var sf serverFlags
	var input, idemKey string
	var wait time.Duration
	var jsonOut bool
	register(&command{
		name:  "trigger",
		usage: "trigger INTEGRATION [--input FILE|-] [--wait DURATION] [--idempotency-key K] [--json] [--server URL] [--api-key KEY]",
		summary: `Start a run of an integration on the ferry server (a sync event) and print its correlation id and status.

The run reads the integration's source, or, with --input, the records of FILE
(- for stdin): a JSON array of objects, or objects one after another (NDJSON).
With --wait, ferry waits up to DURATION for the run to end and prints its
counts; it exits 1 when the run did not succeed (partial, failed, or still
running when the wait ended). Without --wait it exits 0 once the server
accepted the run; poll it with GET /v1/sync-events/ID.

--idempotency-key makes a retried trigger (after a timeout, say) return the
same run instead of starting another, for 24 hours.

The server and key come from FERRY_SERVER and FERRY_API_KEY (or --server and
--api-key); a key of role trigger is enough.`,
		examples: `  ferry trigger products_to_items
  ferry trigger products_to_items --wait 5m
  ferry trigger orders_to_erp --input orders.json --wait 30s --idempotency-key batch-2026-03-01
  cat orders.ndjson | ferry trigger orders_to_erp --input - --json`,
		flags: func(fs *flag.FlagSet) {
			sf.declare(fs)
			fs.StringVar(&input, "input", "", "records to run instead of the source: a JSON array or NDJSON `FILE`, - for stdin")
			fs.DurationVar(&wait, "wait", 0, "wait up to this long for the run to end (e.g. 30s, 10m) and print its counts")
			fs.StringVar(&idemKey, "idempotency-key", "", "a retried trigger with the same key returns the same run (for 24h, or the server's --idempotency-ttl)")
			fs.BoolVar(&jsonOut, "json", false, "print the sync event as JSON")
		},
		run: func(c *ctx, args []string) int {
			if len(args) != 1 {
				return c.errorf("ferry trigger takes one integration name, e.g. ferry trigger products_to_items")
			}
			if wait < 0 {
				return c.errorf("--wait must not be negative")
			}
			body := map[string]any{"integration": args[0]}
			if input != "" {
				recs, err := readInput(input)
				if err != nil {
					return c.errorf("--input %s: %v", input, err)
				}
				body["input"] = recs
			}
			cl, err := sf.client()
			if err != nil {
				return c.errorf("%v", err)
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
			defer stop()
			deadline := time.Now().Add(wait)
			if wait > 0 {
				body["wait"] = min(wait, maxServerWait).String()
				cl.hc.Timeout = min(wait, maxServerWait) + time.Minute
			}
			var header http.Header
			if idemKey != "" {
				header = http.Header{"Idempotency-Key": {idemKey}}
			}
			ev, err := cl.syncEvent(ctx, http.MethodPost, "/v1/sync-events", header, body)
			if err != nil {
				return c.errorf("%v", err)
			}
			for wait > 0 && ev.Outcome == "" {
				left := time.Until(deadline)
				if left < time.Second {
					break
				}
				w := min(left, maxServerWait).Truncate(time.Second)
				if ev, err = cl.syncEvent(ctx, http.MethodGet, "/v1/sync-events/"+url.PathEscape(ev.CorrelationID)+"?wait="+w.String(), nil, nil); err != nil {
					return c.errorf("%v", err)
				}
			}
			if jsonOut {
				var v any
				_ = json.Unmarshal(ev.raw, &v)
				writeJSON(c.stdout, v)
			} else {
				printSyncEvent(c, ev, wait > 0)
			}
			switch {
			case wait == 0:
				return 0
			case ev.Outcome == "":
				if !jsonOut {
					fmt.Fprintf(c.stderr, "The run did not end within %s; it goes on. Poll it with GET /v1/sync-events/%s.\n", wait, ev.CorrelationID)
				}
				return 1
			case ev.Outcome != "succeeded":
				return 1
			}
			return 0
		},
	})
}

func (c *apiClient) syncEvent(ctx context.Context, method, path string, header http.Header, body any) (*syncEvent, error) {
	var raw json.RawMessage
	if _, err := c.do(ctx, method, path, header, body, &raw); err != nil {
		return nil, err
	}
	var ev syncEvent
	if err := json.Unmarshal(raw, &ev); err != nil {
		return nil, fmt.Errorf("%s %s: unexpected answer: %v", method, path, err)
	}
	ev.raw = raw
	return &ev, nil
}

func printSyncEvent(c *ctx, ev *syncEvent, counts bool) {
	fmt.Fprintf(c.stdout, "Correlation ID: %s\n", ev.CorrelationID)
	fmt.Fprintf(c.stdout, "Integration:    %s (revision %s)\n", ev.Integration, orDash(ev.Revision))
	fmt.Fprintf(c.stdout, "Status:         %s\n", ev.Status)
	if counts || ev.Outcome != "" {
		fmt.Fprintf(c.stdout, "Records:        %d total, %d success, %d failed, %d skipped\n",
			ev.Counts.Total, ev.Counts.Success, ev.Counts.Failed, ev.Counts.Skipped)
	}
	if ev.Started != nil && ev.Ended != nil {
		fmt.Fprintf(c.stdout, "Duration:       %s\n", ev.Ended.Sub(*ev.Started).Round(time.Millisecond))
	}
	if ev.Error != "" {
		fmt.Fprintf(c.stdout, "Error:          %s\n", ev.Error)
	}
	if ev.Counts.Failed > 0 {
		fmt.Fprintf(c.stdout, "Failed records: GET /v1/runs/%s/errors, the DLQ: GET /v1/dlq?run=%s\n", ev.CorrelationID, ev.CorrelationID)
	}
}

// readInput reads records from a file (- for stdin): a JSON array of
// objects, or JSON objects one after another (NDJSON).
func readInput(name string) ([]json.RawMessage, error) {
	var b []byte
	var err error
	if name == "-" {
		b, err = io.ReadAll(os.Stdin)
	} else {
		b, err = os.ReadFile(name)
	}
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	var out []json.RawMessage
	for n := 0; ; n++ {
		var v json.RawMessage
		if err := dec.Decode(&v); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return nil, fmt.Errorf("not JSON: %v", err)
		}
		t := strings.TrimSpace(string(v))
		switch {
		case n == 0 && strings.HasPrefix(t, "["):
			if err := json.Unmarshal(v, &out); err != nil {
				return nil, err
			}
			if dec.More() {
				return nil, errors.New("data after the JSON array")
			}
			if _, err := dec.Token(); !errors.Is(err, io.EOF) {
				return nil, errors.New("data after the JSON array")
			}
			return checkObjects(out)
		default:
			out = append(out, v)
		}
	}
	return checkObjects(out)
}

func checkObjects(recs []json.RawMessage) ([]json.RawMessage, error) {
	for i, r := range recs {
		if !strings.HasPrefix(strings.TrimSpace(string(r)), "{") {
			return nil, fmt.Errorf("record %d is not a JSON object", i+1)
		}
	}
	if recs == nil {
		recs = []json.RawMessage{}
	}
	return recs, nil
}
