package webhook

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/zclconf/go-cty/cty"
)

// FuzzVerifyAndParse feeds hostile bodies, signatures, timestamps and records
// paths through every mode: nothing panics, errors are the package's, and
// every record returned is a JSON object that is a slice of the body.
func FuzzVerifyAndParse(f *testing.F) {
	products, _ := os.ReadFile("testdata/webhook-products-update.json")
	f.Add([]byte(workedBody), workedHMAC, "1772366400", "")
	f.Add(products, productsHMAC, "", "variants")
	f.Add([]byte(`[{"id":1},{"id":2}]`), "sha256=00", "2026-03-01T12:00:00Z", "")
	f.Add([]byte(`{"a":{"b":[{"x":"}]\"{"}]}}`), "", "", "a.b")
	f.Add([]byte(`{"a":[{"b":1}`), "!!", "9999999999999999999", "a")
	f.Add([]byte(`{"\u0061":[{}]}`), "", "", "a")
	f.Add([]byte("\xff\xfe"), "====", "-1", "..")
	now := func() time.Time { return time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC) }
	f.Fuzz(func(t *testing.T, body []byte, sig, ts, path string) {
		attrs := map[string]map[string]cty.Value{
			ModeShopify: strs("secret", shopSecret),
			ModeHMAC:    strs("secret", "k", "header", "X-Sig", "encoding", "base64", "prefix", "sha256=", "timestamp_header", "X-Ts"),
			ModeToken:   strs("token", "t"),
			ModeBasic:   strs("username", "u", "password", "p"),
			ModeNone:    nil,
		}
		for mode, a := range attrs {
			if a == nil {
				a = map[string]cty.Value{}
			}
			a["records"] = cty.StringVal(path)
			e, err := New(mode, a, WithClock(now))
			if err != nil {
				if !errors.Is(err, ErrConfig) {
					t.Fatalf("%s: %v", mode, err)
				}
				continue
			}
			r := req()
			r.Header[ShopifyHMACHeader] = []string{sig}
			r.Header["X-Sig"] = []string{sig}
			r.Header["X-Ts"] = []string{ts}
			r.Header["Authorization"] = []string{sig}
			if err := e.Verify(r, body); err != nil && !errors.Is(err, ErrUnauthorized) {
				t.Fatalf("%s: Verify: %v", mode, err)
			}
			recs, err := e.Records(e.Topic(r), body)
			if err != nil {
				if !errors.Is(err, ErrInvalidPayload) {
					t.Fatalf("Records: %v", err)
				}
				continue
			}
			if !json.Valid(body) {
				t.Fatalf("records from invalid JSON %q", body)
			}
			for _, rec := range recs {
				if !json.Valid(rec) || !strings.HasPrefix(string(rec), "{") || !bytes.Contains(body, rec) {
					t.Fatalf("record %q of %q", rec, body)
				}
				var m map[string]json.RawMessage
				if err := json.Unmarshal(rec, &m); err != nil {
					t.Fatalf("record %q is not an object: %v", rec, err)
				}
			}
		}
	})
}
