package main

import (
	"net/http"
	"strings"
	"testing"
)

// TestServeAuthFailureLimit: --auth-failure-limit and -burst, or else
// FERRY_AUTH_FAILURE_LIMIT and -BURST, reach the server: past the burst,
// bad keys get 429 with Retry-After; bad values are refused.
func TestServeAuthFailureLimit(t *testing.T) {
	t.Setenv("FERRY_AUTH_FAILURE_LIMIT", "0.5")
	t.Setenv("FERRY_AUTH_FAILURE_BURST", "9")
	o := serveOptions{authFailureBurst: 2} // a flag wins over its variable
	if err := o.rateLimitsFromEnv(); err != nil {
		t.Fatal(err)
	}
	if o.authFailureLimit != 0.5 || o.authFailureBurst != 2 {
		t.Errorf("%+v", o)
	}
	for env, v := range map[string]string{"FERRY_AUTH_FAILURE_LIMIT": "often", "FERRY_AUTH_FAILURE_BURST": "-3"} {
		t.Run(env, func(t *testing.T) {
			t.Setenv(env, v)
			err := (&serveOptions{}).rateLimitsFromEnv()
			if err == nil || !strings.Contains(err.Error(), env) {
				t.Errorf("%s=%s: %v", env, v, err)
			}
		})
	}

	t.Setenv("FERRY_AUTH_FAILURE_LIMIT", "")
	t.Setenv("FERRY_AUTH_FAILURE_BURST", "")
	s := startTestServer(t, &serveOptions{authFailureLimit: 1.0 / 60, authFailureBurst: 2})
	get := func() *http.Response {
		req, _ := http.NewRequest("GET", s.url+"/v1/config", nil)
		req.Header.Set("Authorization", "ApiKey fy_not-a-key")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res
	}
	for range 2 {
		if r := get(); r.StatusCode != 401 {
			t.Fatalf("a bad key within the burst: %d", r.StatusCode)
		}
	}
	if r := get(); r.StatusCode != 429 || r.Header.Get("Retry-After") == "" {
		t.Errorf("past the burst: %d, Retry-After %q", r.StatusCode, r.Header.Get("Retry-After"))
	}
}
