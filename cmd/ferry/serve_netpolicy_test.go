package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"strings"
	"testing"
)

// --allow-networks takes CIDR prefixes and addresses, comma-separated and
// repeated, and refuses anything else, saying how to write it.
func TestServeAllowNetworksFlag(t *testing.T) {
	var o serveOptions
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	o.declare(fs)
	if err := fs.Parse([]string{"--allow-networks", "127.0.0.1, 10.1.2.3/8", "--allow-networks", "::1,fd00:ec2::254/128"}); err != nil {
		t.Fatal(err)
	}
	want := []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32"), netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("::1/128"), netip.MustParsePrefix("fd00:ec2::254/128")}
	if fmt.Sprint(o.allowNetworks) != fmt.Sprint(want) {
		t.Errorf("allowNetworks = %v, want %v", o.allowNetworks, want)
	}
	for _, bad := range []string{"localhost", "127.0.0.1/33", "fe80::1%eth0"} {
		fs := flag.NewFlagSet("serve", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		(&serveOptions{}).declare(fs)
		err := fs.Parse([]string{"--allow-networks", bad})
		if err == nil || !strings.Contains(err.Error(), "is not a network") || !strings.Contains(err.Error(), "CIDR") {
			t.Errorf("--allow-networks %s: %v", bad, err)
		}
	}
}

// ferry serve hands --allow-networks to the server: a tenant's connection to
// the server's own API is refused by default, and allowed with the flag.
func TestServeAllowNetworks(t *testing.T) {
	for _, tt := range []struct {
		allow  []netip.Prefix
		wantOK bool
	}{{nil, false}, {[]netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}, true}} {
		s := startTestServer(t, &serveOptions{allowNetworks: tt.allow})
		key, err := s.devKey(t.Context(), "acme")
		if err != nil {
			t.Fatal(err)
		}
		call := func(method, path string, body string, hdr ...string) string {
			t.Helper()
			req, _ := http.NewRequest(method, s.url+path, strings.NewReader(body))
			req.Header.Set("Authorization", "ApiKey "+key)
			req.Header.Set("Content-Type", "application/json")
			for i := 0; i+1 < len(hdr); i += 2 {
				req.Header.Set(hdr[i], hdr[i+1])
			}
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			b, _ := io.ReadAll(res.Body)
			if res.StatusCode != 200 {
				t.Fatalf("%s %s: %d %s", method, path, res.StatusCode, b)
			}
			return string(b)
		}
		hcl := fmt.Sprintf("ferry {\n  tenant = \"acme\"\n}\n\nconnection \"self\" {\n  type     = \"http\"\n  base_url = %q\n}\n", s.url)
		files, _ := json.Marshal(map[string]any{"files": map[string]string{"main.hcl": hcl}})
		call("PUT", "/v1/config", string(files), "If-Match", "0")
		got := call("POST", "/v1/connections/self/test", "")
		refused := strings.Contains(got, "is not allowed on this server") && strings.Contains(got, "--allow-networks 127.0.0.1/32")
		if ok := strings.Contains(got, `"ok":true`); ok != tt.wantOK || refused == tt.wantOK {
			t.Errorf("--allow-networks %v: connection test %s", tt.allow, got)
		}
	}
}
