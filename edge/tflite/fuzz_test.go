package tflite

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	flatbuffers "github.com/google/flatbuffers/go"
)

// FuzzRead: Read never panics and returns only *FormatError; a model it accepts is written
// by Write and read back deep-equal. Seeds: the shared reference models (found at test
// time, not copied) and the small generated files in testdata/fuzz/FuzzRead.
func FuzzRead(f *testing.F) {
	// While fuzzing (-fuzz), seeds over 16 KB are left out: the fuzzer spends up to a
	// minute minimising each input that finds new coverage, and megabyte models stall it.
	// Their structure is that of the small models; as plain tests they all run.
	fuzzing := flag.Lookup("test.fuzz") != nil && flag.Lookup("test.fuzz").Value.String() != ""
	for _, path := range sharedModels(f) {
		data, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		if fuzzing && len(data) > 16<<10 {
			continue
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Read(data)
		if err != nil {
			var fe *FormatError
			if !errors.As(err, &fe) {
				t.Fatalf("Read error %T %v, want *FormatError", err, err)
			}
			if fe.Err == nil || fe.Error() == "" {
				t.Fatalf("FormatError without a sentinel: %#v", fe)
			}
			return
		}
		roundTrip(t, m)
	})
}

var updateCorpus = flag.Bool("update-corpus", false, "rewrite the generated seeds in testdata/fuzz/FuzzRead")

// seedFiles returns the small files committed as fuzz seeds: every generated test model
// plus files only the raw builder makes (opcode and options quirks).
func seedFiles(t testing.TB) map[string][]byte {
	seeds := map[string][]byte{}
	for name, m := range testModels() {
		data, err := Write(m)
		if err != nil {
			t.Fatal(err)
		}
		seeds["gen_"+name] = data
	}
	seeds["regress_raw_options_shared_vtable"], _ = Write(sharedVtableModel())
	seeds["raw_opcode_builtin_only"] = rawSpec{opcodes: []rawOpcode{{code: int32(OpMaxPool2D), hasCode: true}}, operators: []rawOperator{{}}}.build()
	seeds["raw_opcode_above_127"] = rawSpec{opcodes: []rawOpcode{{dep: 127, hasDep: true, code: 150, hasCode: true}}, operators: []rawOperator{{}}}.build()
	seeds["raw_pad_empty_table"] = rawSpec{opcodes: []rawOpcode{{dep: int32(OpPad), hasDep: true, version: i32p(2)}},
		operators: []rawOperator{{tag: tagPad, options: emptyTable}}}.build()
	seeds["raw_strided_slice_options"] = rawSpec{opcodes: []rawOpcode{{dep: 45, hasDep: true}},
		operators: []rawOperator{{tag: 32, options: func(b *flatbuffers.Builder) flatbuffers.UOffsetT {
			b.StartObject(6)
			b.PrependBoolSlot(5, true, false)
			b.PrependInt32Slot(4, 16, 0)
			b.PrependInt32Slot(0, -2, 0)
			return b.EndObject()
		}}}}.build()
	seeds["raw_shared_tensor_tables"] = rawSpec{opcodes: []rawOpcode{{}}, operators: []rawOperator{{}}, tensorRepeat: 4, bigShape: 3}.build()
	return seeds
}

// TestSeedCorpus keeps testdata/fuzz/FuzzRead in step with the generators: run with
// -update-corpus after changing them.
func TestSeedCorpus(t *testing.T) {
	dir := filepath.Join("testdata", "fuzz", "FuzzRead")
	for name, data := range seedFiles(t) {
		path := filepath.Join(dir, name)
		want := "go test fuzz v1\n[]byte(" + strconv.Quote(string(data)) + ")\n"
		if *updateCorpus {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(path)
		if err != nil || string(got) != want {
			t.Errorf("seed %s is missing or stale (%v): run go test -run TestSeedCorpus -update-corpus", path, err)
		}
	}
}
