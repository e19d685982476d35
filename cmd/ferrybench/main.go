// Command ferrybench measures ferry's engine on a generated Shopify-like product
// dataset: file → filter + 10-field mapping → file through the engine, beside a
// hand-written decode → map → encode loop on the same data. Each measurement
// runs in a child process so its peak RSS is its own. With -load, a sustained
// mixed load on one server node instead (load.go).
//
//	go run ./cmd/ferrybench [-n 100000] [-workers 0]
//	go run ./cmd/ferrybench -load 30s [-load-webhooks 16] [-load-triggers 4] [-load-readers 2]
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ferryhq/ferry/connectors/file"
	"github.com/ferryhq/ferry/engine"
	"github.com/ferryhq/ferry/lang"
	ferryruntime "github.com/ferryhq/ferry/runtime"
)

const benchConfig = `
connection "files" {
  type = "file"
  path = "."
}

mapping "item" {
  key    = "string(id)"
  filter = "status != 'archived'"
  fields = {
    id          = "id"
    sku         = "variants[0].sku"
    name        = "trim(title)"
    vendor      = "vendor"
    handle      = "handle"
    price_cents = "int(round(parseMoney(variants[0].price) * 100))"
    stock       = "sum(map(variants, .inventory_quantity))"
    tags        = "split(tags, ', ')"
    active      = "status == 'active'"
    variants    = "len(variants)"
  }
}

integration "bench" {
  source {
    connection = connection.files
    path       = "products.json"
  }
  transform {
    mapping = mapping.item
  }
  target {
    connection = connection.files
    path       = "out.ndjson"
    operation  = "upsert"
  }
}
`

func main() {
	n := flag.Int("n", 100_000, "records in the dataset")
	workers := flag.Int("workers", 0, "engine workers (0 = GOMAXPROCS)")
	mode := flag.String("mode", "", "internal: run one measurement in this process (engine|loop)")
	dir := flag.String("dir", "", "internal: dataset directory")
	cpuprofile := flag.String("cpuprofile", "", "with -mode: write a CPU profile here")
	var lo loadOptions
	flag.DurationVar(&lo.duration, "load", 0, "run a sustained mixed load (webhooks, sync events, API reads) on one node for this long, instead of the engine measurements")
	flag.IntVar(&lo.webhooks, "load-webhooks", 16, "with -load: concurrent webhook senders")
	flag.IntVar(&lo.triggers, "load-triggers", 4, "with -load: concurrent sync-event clients")
	flag.IntVar(&lo.reads, "load-readers", 2, "with -load: concurrent API readers")
	flag.DurationVar(&lo.retention, "load-retention", 0, "with -load: keep run history and webhook delivery ids this long (default: 7 days and 24 hours, as ferry serve)")
	flag.StringVar(&lo.memprofile, "load-memprofile", "", "with -load: write a heap profile here once the runs settled")
	flag.Parse()

	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "ferrybench:", err)
			os.Exit(1)
		}
		defer pprof.StopCPUProfile()
	}

	if *mode == "load" || *mode == "" && lo.duration > 0 {
		run := loadParent
		if *mode == "load" {
			run = runLoad
		}
		if lo.duration <= 0 || lo.webhooks < 0 || lo.triggers < 0 || lo.reads < 0 || lo.webhooks+lo.triggers+lo.reads == 0 {
			fmt.Fprintln(os.Stderr, "ferrybench: -load needs a positive duration (such as 30s) and at least one client")
			os.Exit(2)
		}
		if err := run(lo); err != nil {
			fmt.Fprintln(os.Stderr, "ferrybench:", err)
			os.Exit(1)
		}
		return
	}
	if *mode != "" {
		if err := measure(*mode, *dir, *workers); err != nil {
			fmt.Fprintln(os.Stderr, "ferrybench:", err)
			os.Exit(1)
		}
		return
	}
	if *mode == "" && *dir != "" { // generate only, for profiling: ferrybench -dir D, then -mode engine -dir D
		if _, err := generate(*dir, *n); err != nil {
			fmt.Fprintln(os.Stderr, "ferrybench:", err)
			os.Exit(1)
		}
		return
	}
	if *cpuprofile != "" {
		fmt.Fprintln(os.Stderr, "ferrybench: -cpuprofile needs -mode and -dir")
		os.Exit(1)
	}
	if err := compare(*n, *workers); err != nil {
		fmt.Fprintln(os.Stderr, "ferrybench:", err)
		os.Exit(1)
	}
}

type result struct {
	Records int64   `json:"records"`
	Seconds float64 `json:"seconds"`
	RSSMB   float64 `json:"rssMB"`
	LiveMB  float64 `json:"liveMB"` // heap still live after the run: growth here would be a leak
}

func (r result) perSecond() float64 { return float64(r.Records) / r.Seconds }

func compare(n, workers int) error {
	tmp, err := os.MkdirTemp("", "ferrybench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	fmt.Printf("ferrybench: file → filter + 10-field mapping → file, Shopify-like products\n")
	var small result
	for _, size := range []int{n, 4 * n} {
		dir := filepath.Join(tmp, strconv.Itoa(size))
		bytes, err := generate(dir, size)
		if err != nil {
			return err
		}
		fmt.Printf("\ndataset: %d records, %.1f MB (%.0f bytes/record)\n", size, float64(bytes)/1e6, float64(bytes)/float64(size))
		eng, err := child("engine", dir, workers)
		if err != nil {
			return err
		}
		if size != n {
			fmt.Printf("  ferry engine      %9.0f records/s   peak RSS %5.1f MB  (%.1f MB at %d records: %+.1f MB; live heap after the run %.1f MB vs %.1f MB)\n",
				eng.perSecond(), eng.RSSMB, small.RSSMB, n, eng.RSSMB-small.RSSMB, eng.LiveMB, small.LiveMB)
			continue
		}
		small = eng
		loop, err := child("loop", dir, 1)
		if err != nil {
			return err
		}
		fmt.Printf("  ferry engine      %9.0f records/s   peak RSS %5.1f MB\n", eng.perSecond(), eng.RSSMB)
		fmt.Printf("  hand-written loop %9.0f records/s   peak RSS %5.1f MB  (single core)\n", loop.perSecond(), loop.RSSMB)
		fmt.Printf("  ratio engine/loop %9.2fx\n", eng.perSecond()/loop.perSecond())
		for _, m := range []struct{ mode, label string }{{"durable", "durable (JetStream)"}, {"durable-strict", "durable, sync always"}} {
			os.RemoveAll(filepath.Join(dir, "data"))
			d, err := child(m.mode, dir, workers)
			if err != nil {
				return err
			}
			fmt.Printf("  %-22s %9.0f records/s   peak RSS %5.1f MB\n", m.label, d.perSecond(), d.RSSMB)
		}
	}
	return nil
}

func generate(dir string, n int) (int64, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return 0, err
	}
	if err := os.WriteFile(filepath.Join(dir, "bench.hcl"), []byte(benchConfig), 0o644); err != nil {
		return 0, err
	}
	f, err := os.Create(filepath.Join(dir, "products.json"))
	if err != nil {
		return 0, err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	if err := file.GenerateProducts(w, n, 42, "json"); err != nil {
		return 0, err
	}
	if err := w.Flush(); err != nil {
		return 0, err
	}
	info, err := f.Stat()
	f.Close()
	if err != nil {
		return 0, err
	}
	return info.Size(), nil
}

// child runs one measurement in a fresh process and reads its peak RSS.
func child(mode, dir string, workers int) (result, error) {
	var r result
	cmd := exec.Command(os.Args[0], "-mode", mode, "-dir", dir, "-workers", strconv.Itoa(workers))
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return r, fmt.Errorf("%s measurement: %w", mode, err)
	}
	if err := json.Unmarshal(out, &r); err != nil {
		return r, fmt.Errorf("%s measurement printed %q: %w", mode, out, err)
	}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		r.RSSMB = float64(ru.Maxrss) / 1024 // Linux reports KiB
	}
	return r, nil
}

func measure(mode, dir string, workers int) error {
	start := time.Now()
	var records int64
	var err error
	switch mode {
	case "engine":
		records, err = runEngine(dir, workers)
	case "loop":
		records, err = runLoop(dir)
	case "durable", "durable-strict":
		sync := "default"
		if mode == "durable-strict" {
			sync = "always"
		}
		records, err = runDurable(dir, workers, sync)
	default:
		err = fmt.Errorf("unknown mode %q", mode)
	}
	if err != nil {
		return err
	}
	elapsed := time.Since(start).Seconds()
	goruntime.GC()
	var ms goruntime.MemStats
	goruntime.ReadMemStats(&ms)
	return json.NewEncoder(os.Stdout).Encode(result{Records: records, Seconds: elapsed, LiveMB: float64(ms.HeapAlloc) / 1e6})
}

func runEngine(dir string, workers int) (int64, error) {
	cfg, diags := lang.Load(dir, lang.LoadOptions{})
	if diags.HasErrors() {
		return 0, diags
	}
	prog, diags := engine.Compile(cfg)
	if diags.HasErrors() {
		return 0, diags
	}
	res, err := prog.Run(context.Background(), "bench", engine.RunOptions{Workers: workers})
	if err != nil {
		return 0, err
	}
	if res.Counts.Failed > 0 {
		return 0, fmt.Errorf("engine run failed %d records: %s", res.Counts.Failed, res.Error)
	}
	return res.Counts.Total, nil
}

// runDurable runs the same integration through the durable runtime: file →
// JetStream work stream → stages → file, each message acked after execute.
func runDurable(dir string, workers int, sync string) (int64, error) {
	cfg, diags := lang.Load(dir, lang.LoadOptions{})
	if diags.HasErrors() {
		return 0, diags
	}
	prog, diags := engine.Compile(cfg)
	if diags.HasErrors() {
		return 0, diags
	}
	if workers > 0 {
		prog.Config.Integrations["bench"].Workers = workers
	}
	ctx := context.Background()
	rt, err := ferryruntime.Open(ctx, ferryruntime.Options{DataDir: filepath.Join(dir, "data"), SyncPolicy: sync})
	if err != nil {
		return 0, err
	}
	defer rt.Close()
	res, err := rt.Run(ctx, "bench", prog, "bench", ferryruntime.RunOptions{Trigger: "bench"})
	if err != nil {
		return 0, err
	}
	if res.Counts.Failed > 0 {
		return 0, fmt.Errorf("durable run failed %d records: %s", res.Counts.Failed, res.Error)
	}
	return res.Counts.Total, nil
}

// product is what a hand-written program would decode.
type product struct {
	ID       int64  `json:"id"`
	Title    string `json:"title"`
	Vendor   string `json:"vendor"`
	Handle   string `json:"handle"`
	Status   string `json:"status"`
	Tags     string `json:"tags"`
	Variants []struct {
		SKU               string `json:"sku"`
		Price             string `json:"price"`
		InventoryQuantity int64  `json:"inventory_quantity"`
	} `json:"variants"`
}

type item struct {
	ID         int64    `json:"id"`
	SKU        string   `json:"sku"`
	Name       string   `json:"name"`
	Vendor     string   `json:"vendor"`
	Handle     string   `json:"handle"`
	PriceCents int64    `json:"price_cents"`
	Stock      int64    `json:"stock"`
	Tags       []string `json:"tags"`
	Active     bool     `json:"active"`
	Variants   int      `json:"variants"`
}

// runLoop is the baseline: the same work written by hand for this one shape.
func runLoop(dir string) (int64, error) {
	in, err := os.Open(filepath.Join(dir, "products.json"))
	if err != nil {
		return 0, err
	}
	defer in.Close()
	out, err := os.Create(filepath.Join(dir, "loop.ndjson"))
	if err != nil {
		return 0, err
	}
	defer out.Close()
	w := bufio.NewWriterSize(out, 256<<10)
	enc := json.NewEncoder(w)
	dec := json.NewDecoder(bufio.NewReaderSize(in, 256<<10))
	if _, err := dec.Token(); err != nil {
		return 0, err
	}
	var n int64
	for dec.More() {
		var p product
		if err := dec.Decode(&p); err != nil {
			return n, err
		}
		n++
		if p.Status == "archived" || len(p.Variants) == 0 {
			continue
		}
		price, _ := strconv.ParseFloat(p.Variants[0].Price, 64)
		it := item{ID: p.ID, SKU: p.Variants[0].SKU, Name: strings.TrimSpace(p.Title), Vendor: p.Vendor, Handle: p.Handle,
			PriceCents: int64(math.Round(price * 100)), Tags: strings.Split(p.Tags, ", "), Active: p.Status == "active", Variants: len(p.Variants)}
		for _, v := range p.Variants {
			it.Stock += v.InventoryQuantity
		}
		if err := enc.Encode(&it); err != nil {
			return n, err
		}
	}
	if _, err := dec.Token(); err != nil && err != io.EOF {
		return n, err
	}
	return n, w.Flush()
}
