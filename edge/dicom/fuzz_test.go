package dicom

import (
	"flag"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

var updateSeeds = flag.Bool("update-seeds", false, "rewrite the committed fuzz seed corpus from seedFiles")

const seedDir = "testdata/fuzz/FuzzDecode"

// seedEntry is a corpus file in the "go test fuzz v1" format.
func seedEntry(data []byte) []byte {
	return []byte("go test fuzz v1\n[]byte(" + strconv.Quote(string(data)) + ")\n")
}

// The committed seed corpus is exactly what seedFiles synthesises; rewrite it with
// `go test ./edge/dicom/ -run TestFuzzSeedCorpus -args -update-seeds`. Crashers the fuzzer
// finds are kept beside the seeds under their own names.
func TestFuzzSeedCorpus(t *testing.T) {
	for name, data := range seedFiles(t) {
		path := filepath.Join(seedDir, "seed-"+name)
		want := seedEntry(data)
		if *updateSeeds {
			if err := os.WriteFile(path, want, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("seed %s missing (run with -update-seeds): %v", name, err)
		}
		if string(got) != string(want) {
			t.Errorf("seed %s is stale (run with -update-seeds)", name)
		}
	}
}

func FuzzDecode(f *testing.F) {
	for _, data := range seedFiles(f) {
		f.Add(data)
	}
	// Small limits keep each execution cheap; the logic under test is the same.
	opts := Options{MaxFileSize: 1 << 20, MaxPixels: 1 << 16, MaxElements: 2000}
	f.Fuzz(func(t *testing.T, data []byte) {
		img, err := Decode(data, opts)
		if err != nil {
			if !classified(err) {
				t.Fatalf("error wraps no sentinel: %v", err)
			}
			if img != nil {
				t.Fatal("image returned with an error")
			}
			return
		}
		b := img.Gray.Bounds()
		if b.Dx() != img.Info.Columns || b.Dy() != img.Info.Rows {
			t.Fatalf("image %v for Columns×Rows %d×%d", b, img.Info.Columns, img.Info.Rows)
		}
		if ws := img.Info.WindowSource; ws != WindowFromDataset && ws != WindowMinMax && ws != WindowNone {
			t.Fatalf("window source %q", ws)
		}
	})
}
