package runtime

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/ferryhq/ferry/engine"
)

// FuzzRunHead: whatever encoding/json decodes into a run's head,
// decodeRunHead decodes the same; on anything else it does not panic.
func FuzzRunHead(f *testing.F) {
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.UTC)
	for _, r := range []Run{
		{ID: "20260301T120000123Z-0123456789abcdef", Tenant: "acme", Integration: "orders", Trigger: "webhook", Revision: "3",
			Status: engine.RunPartial, Counts: engine.Counts{Total: 10, Success: 8, Failed: 2}, Queued: t0, Started: t0.Add(time.Second),
			Ended: t0.Add(time.Minute), Error: `read source: "quoted" \ and ünïcode`, Batches: 2, IngestDone: true,
			CursorFrom: &Cursor{Value: "2026-01-01", Key: "k{}[]\"", RunID: "r"}, Resumes: 1, Replays: 2},
		{ID: "r1", Tenant: "acme", Integration: "a", Trigger: "schedule:nightly \"x\"", Status: engine.RunQueued,
			Queued: time.Date(2026, 3, 1, 12, 0, 0, 0, time.FixedZone("x", 3600))},
		{ID: "ünï", Integration: "b\u2028", Status: "running", Queued: t0},
		{},
	} {
		b, _ := json.Marshal(r)
		f.Add(b)
	}
	for _, s := range []string{
		`{"id":"a","ID":"b"}`, `{"id":"a","id":"b"}`, `{"Status":"x","status":"y"}`, `{"ſtatus":"x"}`, `{"id":null}`,
		`{"id":1}`, `{"queued":""}`, `{"queued":"2026-03-01T12:00:00Z","started":"2026-13-01T12:00:00Z"}`,
		`{"id":"a\u0062","trigger":"\ud800"}`, "{\"id\":\"a\xff\"}", ` { "id" : "a" , "counts" : { "total" : 1 } } `,
		`null`, `[]`, `{}`, `{`, `{"id":"a"}x`, `{"x":[1,{"y":"]"}],"id":"z"}`, `{"x":tru,"id":"a"}`, "",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var want, got runHead
		wantErr := json.Unmarshal(b, &want)
		err := decodeRunHead(b, &got)
		if wantErr != nil {
			return // refused by encoding/json: read or not, only no panic
		}
		if err != nil {
			t.Fatalf("%q: %v; encoding/json read %+v", b, err, want)
		}
		got.raw = nil
		if got.ID != want.ID || got.Integration != want.Integration || got.Trigger != want.Trigger || got.Status != want.Status ||
			!got.Queued.Equal(want.Queued) || !got.Started.Equal(want.Started) {
			t.Fatalf("%q:\n got %+v\nwant %+v", b, got, want)
		}
	})
}
