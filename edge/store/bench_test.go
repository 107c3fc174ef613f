package store_test

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cxr-edge/cxr-edge/edge/store"
	"github.com/cxr-edge/cxr-edge/telemetry"
)

const benchImage = 256 << 10 // a typical preprocessed-for-upload chest X-ray PNG is larger; 256 KiB keeps the run short

func benchData(i int) []byte {
	b := make([]byte, benchImage)
	binary.LittleEndian.PutUint64(b, uint64(i))
	return b
}

// BenchmarkStoreLifecycle is one image's full durable path: Submit (blob + record),
// Commit (result + outbox), Ack. Compare with BenchmarkPeerDurableFile.
func BenchmarkStoreLifecycle(b *testing.B) {
	s, err := store.Open(b.TempDir(), store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	b.SetBytes(benchImage)
	for i := 0; b.Loop(); i++ {
		in, _, err := s.Submit("folder", "x.png", benchData(i), time.Time{})
		if err != nil {
			b.Fatal(err)
		}
		seq, err := s.Commit(telemetry.Result{ID: in.ID, Label: telemetry.LabelNormal})
		if err != nil {
			b.Fatal(err)
		}
		if err := s.Ack(seq); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPeerDurableFile is the least any durable intake must do: write the image to a
// temporary file, fsync, rename, fsync the directory.
func BenchmarkPeerDurableFile(b *testing.B) {
	dir := b.TempDir()
	b.SetBytes(benchImage)
	for i := 0; b.Loop(); i++ {
		tmp := filepath.Join(dir, "tmp")
		f, err := os.Create(tmp)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := f.Write(benchData(i)); err != nil {
			b.Fatal(err)
		}
		if err := f.Sync(); err != nil {
			b.Fatal(err)
		}
		f.Close()
		if err := os.Rename(tmp, filepath.Join(dir, "img")); err != nil {
			b.Fatal(err)
		}
		d, _ := os.Open(dir)
		d.Sync()
		d.Close()
	}
}
