package file

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/ferryhq/ferry/connectors"
)

const benchRecords = 10000

// benchFile generates the product dataset in a format and returns its directory,
// name and size.
func benchFile(b *testing.B, format string) (dir, name string, size int64) {
	b.Helper()
	dir = b.TempDir()
	name = "products." + format
	f, err := os.Create(filepath.Join(dir, name))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if err := GenerateProducts(f, benchRecords, 1, format); err != nil {
		b.Fatal(err)
	}
	fi, err := f.Stat()
	if err != nil {
		b.Fatal(err)
	}
	return dir, name, fi.Size()
}

// benchConn opens a file connection in dir, confined to it (as on ferry serve) or not.
func benchConn(b *testing.B, dir string, confined bool) connectors.Connection {
	if !confined {
		return openConn(b, dir, "")
	}
	conn, err := Open(connectors.Env{Dir: dir, Root: dir}, decodeHCL(b, ConnectionSpec, ""))
	if err != nil {
		b.Fatal(err)
	}
	return conn
}

func benchRead(b *testing.B, format string, confined bool) {
	dir, name, size := benchFile(b, format)
	src := newSource(b, benchConn(b, dir, confined), `path = "`+name+`"`)
	b.SetBytes(size)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		n := 0
		err := src.Read(context.Background(), connectors.ReadRequest{}, func(connectors.Record) error { n++; return nil })
		if err != nil || n != benchRecords {
			b.Fatalf("read %d records: %v", n, err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*benchRecords), "ns/record")
}

func BenchmarkReadNDJSON(b *testing.B)    { benchRead(b, "ndjson", false) }
func BenchmarkReadJSONArray(b *testing.B) { benchRead(b, "json", false) }

// Confined: the files are opened through an os.Root.
func BenchmarkReadNDJSONConfined(b *testing.B)  { benchRead(b, "ndjson", true) }
func BenchmarkWriteNDJSONConfined(b *testing.B) { benchWrite(b, true) }

func BenchmarkWriteNDJSON(b *testing.B) { benchWrite(b, false) }

func benchWrite(b *testing.B, confined bool) {
	dir, name, size := benchFile(b, "ndjson")
	f, err := os.Open(filepath.Join(dir, name))
	if err != nil {
		b.Fatal(err)
	}
	var writes []connectors.Write
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			b.Fatal(err)
		}
		writes = append(writes, connectors.Write{Operation: connectors.OpUpsert, Record: m})
	}
	f.Close()
	conn := benchConn(b, dir, confined)
	cfg := decodeHCL(b, TargetSpec, `path = "out.ndjson"`)
	b.SetBytes(size)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		sink, err := conn.Sink(cfg)
		if err != nil {
			b.Fatal(err)
		}
		for i := 0; i < len(writes); i += 100 {
			if errs := sink.Write(context.Background(), writes[i:min(i+100, len(writes))]); errs != nil {
				b.Fatal(errs)
			}
		}
		if err := sink.Close(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*benchRecords), "ns/record")
}
