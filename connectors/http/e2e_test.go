package httpconn_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	_ "github.com/ferryhq/ferry/connectors/http"
	"github.com/ferryhq/ferry/engine"
	"github.com/ferryhq/ferry/lang"
)

// received is one write the target API got.
type received struct {
	Method, Path, Key string
	Body              map[string]any
}

// TestEndToEndThroughEngine runs an HCL integration in memory: it reads a
// paginated, bearer-protected API and upserts every mapped record into a
// second API that answers 409 for existing items, fails one write once with a
// 503 and rejects one record for good.
func TestEndToEndThroughEngine(t *testing.T) {
	products := []map[string]any{
		{"id": 1, "title": " Tee ", "price": "19.99", "status": "active"},
		{"id": 2, "title": "Hoodie", "price": "49.50", "status": "active"},
		{"id": 3, "title": "Old cap", "price": "5", "status": "archived"},
		{"id": 4, "title": "Socks", "price": "4.25", "status": "active"},
		{"id": 5, "title": "Scarf", "price": "-1", "status": "active"},
	}
	var pages []string
	var mu sync.Mutex
	source := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer shop-token" || r.URL.Path != "/admin/products" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		mu.Lock()
		pages = append(pages, r.URL.RawQuery)
		mu.Unlock()
		page, _ := strconv.Atoi(r.URL.Query().Get("page"))
		size, _ := strconv.Atoi(r.URL.Query().Get("per_page"))
		from := min((page-1)*size, len(products))
		to := min(from+size, len(products))
		b, _ := json.Marshal(map[string]any{"result": map[string]any{"products": products[from:to]}})
		w.Write(b)
	}))
	defer source.Close()

	var got []received
	keys := map[string][]string{} // idempotency keys per entity
	failedOnce := false
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-API-Key") != "erp-key" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		var body map[string]any
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		sku, _ := body["sku"].(string)
		got = append(got, received{r.Method, r.URL.Path, r.Header.Get("Idempotency-Key"), body})
		keys[sku] = append(keys[sku], r.Header.Get("Idempotency-Key"))
		switch {
		case body["price_cents"].(float64) < 0:
			w.WriteHeader(http.StatusUnprocessableEntity)
			fmt.Fprint(w, `{"errors":{"price_cents":"must not be negative"}}`)
		case sku == "P-2" && !failedOnce:
			failedOnce = true
			w.WriteHeader(http.StatusServiceUnavailable)
		case r.Method == http.MethodPost && sku == "P-1":
			w.WriteHeader(http.StatusConflict) // P-1 exists already
		case r.Method == http.MethodPost:
			w.WriteHeader(http.StatusCreated)
		default:
			w.WriteHeader(http.StatusOK)
		}
	}))
	defer target.Close()

	src := fmt.Sprintf(`
connection "shop" {
  type     = "http"
  base_url = %q
  auth {
    type  = "bearer"
    token = secret("shop_token")
  }
}

connection "erp" {
  type     = "http"
  base_url = "%s/api/v1"
  auth {
    type   = "api_key"
    header = "X-API-Key"
    value  = secret("erp_key")
  }
}

mapping "product_to_item" {
  key    = "string(id)"
  filter = "status != 'archived'"
  fields = {
    sku         = "'P-' + string(id)"
    name        = "trim(title)"
    price_cents = "int(float(price) * 100 + 0.5)"
  }
}

integration "products_to_erp" {
  source {
    connection = connection.shop
    path       = "/products"
    records    = "result.products"
    pagination {
      type       = "page"
      size_param = "per_page"
      page_size  = 2
    }
  }
  transform {
    mapping = mapping.product_to_item
  }
  target {
    connection    = connection.erp
    operation     = "upsert"
    path          = "'/items'"
    exists_status = 409
    update_path   = "/items/{key}"
    batch_size    = 2
  }
  retry {
    max_attempts = 3
    initial      = "1s"
  }
}
`, source.URL+"/admin", target.URL)

	cfg, diags := lang.LoadSources(t.TempDir(), map[string][]byte{"main.hcl": []byte(src)}, lang.LoadOptions{})
	if diags.HasErrors() {
		t.Fatalf("load: %v", diags)
	}
	prog, diags := engine.Compile(cfg)
	if diags.HasErrors() {
		t.Fatalf("compile: %v", diags)
	}
	var slept []time.Duration
	res, err := prog.Run(context.Background(), "products_to_erp", engine.RunOptions{
		Secrets: func(name string) (string, error) {
			return map[string]string{"shop_token": "shop-token", "erp_key": "erp-key"}[name], nil
		},
		Workers: 2,
		Sleep: func(ctx context.Context, d time.Duration) error {
			slept = append(slept, d)
			return ctx.Err()
		},
	})
	if err != nil {
		t.Fatal(err)
	}

	if want := (engine.Counts{Total: 5, Success: 3, Failed: 1, Skipped: 1, Retried: 1}); res.Counts != want {
		t.Errorf("counts %+v, want %+v", res.Counts, want)
	}
	if len(res.Failures) != 1 || !strings.Contains(res.Failures[0].Message, "must not be negative") || res.Failures[0].Key != "5" || res.Failures[0].Position != "/products page 3 record 1" {
		t.Errorf("failures %+v", res.Failures)
	}
	if want := []string{"page=1&per_page=2", "page=2&per_page=2", "page=3&per_page=2"}; !reflect.DeepEqual(pages, want) {
		t.Errorf("source pages %v, want %v", pages, want)
	}
	var calls []string
	for _, r := range got {
		calls = append(calls, r.Method+" "+r.Path+" "+r.Body["sku"].(string))
	}
	want := []string{
		"POST /api/v1/items P-1", "PUT /api/v1/items/1 P-1", // 409: exists, so updated
		"POST /api/v1/items P-2", // 503, retried by the engine
		"POST /api/v1/items P-2", // created
		"POST /api/v1/items P-4", // created
		"POST /api/v1/items P-5", // 422: failed for good
	}
	if !equalUnordered(calls, want) {
		t.Errorf("target got\n  %s\nwant (in any order)\n  %s", strings.Join(calls, "\n  "), strings.Join(want, "\n  "))
	}
	for _, r := range got {
		if r.Body["sku"] == "P-1" && r.Method == "PUT" {
			if !reflect.DeepEqual(r.Body, map[string]any{"sku": "P-1", "name": "Tee", "price_cents": float64(1999)}) {
				t.Errorf("P-1 body %v", r.Body)
			}
		}
	}
	if k := keys["P-2"]; len(k) != 2 || k[0] == "" || k[0] != k[1] {
		t.Errorf("P-2's retry sent idempotency keys %q, want the same key twice", k)
	}
	if len(slept) != 1 {
		t.Errorf("engine backoff sleeps %v, want one", slept)
	}
}

func equalUnordered(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	n := map[string]int{}
	for _, s := range a {
		n[s]++
	}
	for _, s := range b {
		if n[s]--; n[s] < 0 {
			return false
		}
	}
	return true
}
