package tflite

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"unsafe"

	"github.com/cxr-edge/cxr-edge/edge/testenv"
)

// sharedModels returns every .tflite file of the shared reference set.
func sharedModels(t testing.TB) []string {
	t.Helper()
	dir := testenv.SharedPath(t, "models")
	top, _ := filepath.Glob(filepath.Join(dir, "*.tflite"))
	ops, _ := filepath.Glob(filepath.Join(dir, "ops", "*.tflite"))
	files := append(top, ops...)
	if len(files) < 25 {
		testenv.Missing(t, "only %d .tflite files in %s", len(files), dir)
	}
	return files
}

func mustRead(t testing.TB, path string) (*Model, []byte) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	m, err := Read(data)
	if err != nil {
		t.Fatalf("%s: %v", filepath.Base(path), err)
	}
	return m, data
}

func opNames(m *Model) []string {
	var names []string
	for _, op := range m.Subgraphs[0].Operators {
		names = append(names, m.OperatorCodes[op.OpcodeIndex].Builtin.String())
	}
	return names
}

// TestReadSharedModels checks facts about the real files that a reader gets wrong easily.
func TestReadSharedModels(t *testing.T) {
	dir := testenv.SharedPath(t, "models")
	for _, path := range sharedModels(t) {
		m, _ := mustRead(t, path)
		if len(m.Subgraphs[0].Operators) == 0 || len(m.Subgraphs[0].Inputs) == 0 {
			t.Errorf("%s: empty graph", filepath.Base(path))
		}
	}
	tests := []struct {
		file  string
		check func(t *testing.T, m *Model)
	}{
		{"person_detect_int8.tflite", func(t *testing.T, m *Model) {
			// TOCO: no builtin_code, so ops come from deprecated_builtin_code alone;
			// rank-1 biases carry quantized_dimension 3, read as 0.
			if got := opNames(m)[0]; got != "CONV_2D" && got != "DEPTHWISE_CONV_2D" {
				t.Errorf("first op %s", got)
			}
			for _, tn := range m.Subgraphs[0].Tensors {
				if len(tn.Shape) == 1 && tn.Quantization != nil && tn.Quantization.QuantizedDimension != 0 {
					t.Errorf("%s: quantized_dimension %d", tn.Name, tn.Quantization.QuantizedDimension)
				}
			}
			// The DERIVED file is the original with those 14 dimensions patched to 0:
			// read, the two are the same model.
			fixed, _ := mustRead(t, filepath.Join(dir, "person_detect_int8_qdim0_DERIVED.tflite"))
			if ok, where := sameModel(m, fixed); !ok {
				t.Errorf("differs from the qdim0 file at %s", where)
			}
		}},
		{"hello_world_int8.tflite", func(t *testing.T, m *Model) {
			in := m.Subgraphs[0].Tensors[m.Subgraphs[0].Inputs[0]]
			if !slices.Equal(in.ShapeSignature, []int32{-1, 1}) || !slices.Equal(in.Shape, []int32{1, 1}) {
				t.Errorf("input shape %v signature %v", in.Shape, in.ShapeSignature)
			}
		}},
		{"vww_96_int8.tflite", func(t *testing.T, m *Model) {
			used := map[uint32]bool{}
			for _, op := range m.Subgraphs[0].Operators {
				used[op.OpcodeIndex] = true
			}
			if len(used) >= len(m.OperatorCodes) {
				t.Errorf("expected unused operator codes: %d used of %d", len(used), len(m.OperatorCodes))
			}
		}},
		{"mobilenet_v2_pytorch_int8_1x3x224x224.tflite", func(t *testing.T, m *Model) {
			// TinyNeuralNetwork: one operator code per operator (duplicates), no builtin_code.
			if len(m.OperatorCodes) != len(m.Subgraphs[0].Operators) {
				t.Errorf("%d codes for %d operators", len(m.OperatorCodes), len(m.Subgraphs[0].Operators))
			}
			pads := 0
			for i, op := range m.Subgraphs[0].Operators {
				if m.OperatorCodes[op.OpcodeIndex].Builtin == OpPad {
					pads++
					if _, ok := op.Options.(*PadOptions); !ok {
						t.Errorf("operator %d: PAD options %#v, want empty *PadOptions", i, op.Options)
					}
				}
			}
			if pads != 18 {
				t.Errorf("%d PAD ops, want 18", pads)
			}
			if got := opNames(m)[0]; got != "TRANSPOSE" {
				t.Errorf("first op %s, want TRANSPOSE", got)
			}
		}},
		{"ops/maxpool_int8_opcode_builtin_only.tflite", func(t *testing.T, m *Model) {
			if got := opNames(m); got[0] != "MAX_POOL_2D" {
				t.Errorf("ops %v", got)
			}
		}},
		{"ops/maxpool_int8_opcode_deprecated_only.tflite", func(t *testing.T, m *Model) {
			if got := opNames(m); got[0] != "MAX_POOL_2D" {
				t.Errorf("ops %v", got)
			}
		}},
		{"ops/conv2d_int8_perchannel.tflite", func(t *testing.T, m *Model) {
			op := m.Subgraphs[0].Operators[0]
			o, ok := op.Options.(*Conv2DOptions)
			if !ok || o.DilationW != 1 || o.DilationH != 1 {
				t.Errorf("options %#v", op.Options)
			}
			w := m.Subgraphs[0].Tensors[op.Inputs[1]]
			if !w.Quantization.PerChannel() || int32(len(w.Quantization.Scale)) != w.Shape[0] {
				t.Errorf("filter quantization %+v shape %v", w.Quantization, w.Shape)
			}
			if len(m.BufferData(&w)) != w.NumElements() {
				t.Errorf("filter data %d bytes for %d elements", len(m.BufferData(&w)), w.NumElements())
			}
		}},
		{"ops/logistic_int8.tflite", func(t *testing.T, m *Model) {
			if m.Subgraphs[0].Operators[0].Options != nil {
				t.Errorf("LOGISTIC options %#v, want nil", m.Subgraphs[0].Operators[0].Options)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			m, _ := mustRead(t, filepath.Join(dir, tc.file))
			tc.check(t, m)
		})
	}
}

// TestRoundTrip: Read→Write→Read gives a deep-equal Model for every shared and generated
// model, and writing again gives the same bytes.
func TestRoundTrip(t *testing.T) {
	inputs := map[string][]byte{}
	for _, path := range sharedModels(t) {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		inputs[filepath.Base(path)] = data
	}
	for name, m := range testModels() {
		data, err := Write(m)
		if err != nil {
			t.Fatalf("generated %s: %v", name, err)
		}
		inputs["generated/"+name] = data
	}
	for name, data := range inputs {
		m, err := Read(data)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		out, err := Write(m)
		if err != nil {
			t.Errorf("%s: Write: %v", name, err)
			continue
		}
		m2, err := Read(out)
		if err != nil {
			t.Errorf("%s: Read(Write): %v", name, err)
			continue
		}
		if ok, where := sameModel(m, m2); !ok {
			t.Errorf("%s: Read(Write(m)) differs at %s", name, where)
		}
		if out2, _ := Write(m2); !bytes.Equal(out, out2) {
			t.Errorf("%s: writing twice gives different bytes", name)
		}
		checkLayout(t, name, m2, out)
	}
}

// TestGeneratedModelsReadBack: the in-memory test models come back exactly as built.
func TestGeneratedModelsReadBack(t *testing.T) {
	for name, m := range testModels() {
		data, err := Write(m)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		got, err := Read(data)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if ok, where := sameModel(m, got); !ok {
			t.Errorf("%s: differs at %s", name, where)
		}
	}
}

// checkLayout verifies the writer's promises on its output: identifier, version, buffer
// alignment, and both operator code fields.
func checkLayout(t *testing.T, name string, m *Model, file []byte) {
	t.Helper()
	if string(file[4:8]) != "TFL3" {
		t.Errorf("%s: identifier %q", name, file[4:8])
	}
	for i, b := range m.Buffers {
		if len(b.Data) == 0 {
			continue
		}
		off := uintptr(unsafe.Pointer(&b.Data[0])) - uintptr(unsafe.Pointer(&file[0]))
		if off%16 != 0 {
			t.Errorf("%s: buffers[%d].data at file offset %d, not 16-aligned", name, i, off)
		}
	}
	d := &decoder{buf: file, budget: 1 << 30}
	root, _ := d.deref(0, "")
	rt, err := d.table(root, "")
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := d.u32Field(rt, 0, 0, ""); v != 3 {
		t.Errorf("%s: version %d", name, v)
	}
	codes, err := tables(d, rt, 1, "operator_codes", func(d *decoder, ct table) ([2]int32, error) {
		dep, err1 := d.u8Field(ct, 0, 0, "")
		code, err2 := d.i32Field(ct, 3, 0, "")
		return [2]int32{int32(int8(dep)), code}, errors.Join(err1, err2)
	})
	if err != nil {
		t.Fatal(err)
	}
	for i, c := range codes {
		op := int32(m.OperatorCodes[i].Builtin)
		if c[1] != op || c[0] != min(op, 127) {
			t.Errorf("%s: operator_codes[%d] written as deprecated %d, builtin %d; want %d, %d", name, i, c[0], c[1], min(op, 127), op)
		}
	}
}

// TestReadAllocationBounded: real files decode within the memory budget, with room to spare.
func TestReadAllocationBounded(t *testing.T) {
	for _, path := range sharedModels(t) {
		data, _ := os.ReadFile(path)
		got := allocated(func() { _, _ = Read(data) })
		if limit := uint64(len(data))*allocPerByte/4 + allocSlack; got > limit {
			t.Errorf("%s: Read allocated %d bytes for a %d-byte file (limit %d)", filepath.Base(path), got, len(data), limit)
		}
	}
}

func allocated(fn func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	fn()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// TestTruncated: every cut of a file returns a *FormatError, never a panic.
func TestTruncated(t *testing.T) {
	files := map[string][]byte{}
	for name, m := range testModels() {
		data, err := Write(m)
		if err != nil {
			t.Fatal(err)
		}
		files[name] = data
	}
	for _, path := range sharedModels(t) {
		if fi, err := os.Stat(path); err == nil && fi.Size() < 400_000 {
			files[filepath.Base(path)], _ = os.ReadFile(path)
		}
	}
	for name, data := range files {
		// Converters pad files at the end; cutting only padding leaves a valid file.
		padding := len(data) - len(bytes.TrimRight(data, "\x00"))
		step := max(1, len(data)/1500)
		for cut := 0; cut < len(data); cut += step {
			m, err := Read(data[:cut])
			if err == nil {
				if cut < len(data)-padding {
					t.Errorf("%s cut at %d of %d: no error", name, cut, len(data))
				} else {
					roundTrip(t, m)
				}
				continue
			}
			var fe *FormatError
			if !errors.As(err, &fe) {
				t.Errorf("%s cut at %d: %T %v, want *FormatError", name, cut, err, err)
			}
		}
	}
}

// TestCorrupted flips bytes all over real and generated files: Read returns a *FormatError
// or a model that survives the round trip; it never panics.
func TestCorrupted(t *testing.T) {
	files := map[string][]byte{}
	for name, m := range testModels() {
		files[name], _ = Write(m)
	}
	for _, path := range sharedModels(t) {
		if fi, err := os.Stat(path); err == nil && fi.Size() < 100_000 {
			files[filepath.Base(path)], _ = os.ReadFile(path)
		}
	}
	rejected, accepted := 0, 0
	for name, orig := range files {
		data := bytes.Clone(orig)
		step := max(1, len(data)/200)
		for pos := 0; pos < len(data); pos += step {
			for _, mask := range []byte{0xff, 0x01} {
				data[pos] ^= mask
				m, err := Read(data)
				if err != nil {
					var fe *FormatError
					if !errors.As(err, &fe) {
						t.Fatalf("%s byte %d ^%#x: %T %v, want *FormatError", name, pos, mask, err, err)
					}
					rejected++
				} else {
					accepted++
					roundTrip(t, m)
				}
				data[pos] ^= mask
			}
		}
	}
	t.Logf("flipped files: %d rejected, %d accepted (weights and names flip harmlessly)", rejected, accepted)
	if rejected == 0 || accepted == 0 {
		t.Errorf("%d rejected, %d accepted: the test is not exercising both paths", rejected, accepted)
	}
}

// roundTrip asserts the fuzz property for a model Read accepted.
func roundTrip(t testing.TB, m *Model) {
	t.Helper()
	out, err := Write(m)
	if err != nil {
		t.Fatalf("Write of a model Read accepted: %v", err)
	}
	m2, err := Read(out)
	if err != nil {
		t.Fatalf("Read(Write(m)): %v", err)
	}
	if ok, where := sameModel(m, m2); !ok {
		t.Fatalf("Read(Write(m)) differs at %s", where)
	}
}

// patchU32 returns a copy of file with the u32 at pos replaced.
func patchU32(file []byte, pos int, v uint32) []byte {
	out := bytes.Clone(file)
	out[pos], out[pos+1], out[pos+2], out[pos+3] = byte(v), byte(v>>8), byte(v>>16), byte(v>>24)
	return out
}

// vectorLengthPos finds the length word of subgraphs[0].tensors in a file.
func vectorLengthPos(t *testing.T, file []byte) int {
	d := &decoder{buf: file, budget: 1 << 30}
	root, _ := d.deref(0, "")
	rt, _ := d.table(root, "")
	sgs, _, _, err := d.vector(rt, 2, 4, "")
	if err != nil {
		t.Fatal(err)
	}
	p, _ := d.deref(sgs, "")
	st, _ := d.table(p, "")
	start, _, _, err := d.vector(st, 0, 4, "")
	if err != nil {
		t.Fatal(err)
	}
	return start - 4
}

// TestHostileLengths: a file claiming a 2^31-element vector fails at once, allocating
// nothing of that size.
func TestHostileLengths(t *testing.T) {
	file, err := Write(testModels()["conv2d"])
	if err != nil {
		t.Fatal(err)
	}
	pos := vectorLengthPos(t, file)
	for _, n := range []uint32{1 << 31, 1<<32 - 1, 1 << 20} {
		bad := patchU32(file, pos, n)
		var err error
		got := allocated(func() { _, err = Read(bad) })
		if !errors.Is(err, ErrTruncated) {
			t.Errorf("length %d: %v, want ErrTruncated", n, err)
		}
		if !strings.Contains(err.Error(), "subgraphs[0].tensors") {
			t.Errorf("length %d: error %q does not name subgraphs[0].tensors", n, err)
		}
		if got > 64<<10 {
			t.Errorf("length %d: Read allocated %d bytes", n, got)
		}
	}
}

// TestSharedTablesBudget: FlatBuffers lets many offsets point at one table. A 100 KB file
// whose 20000 tensor slots all name one tensor with a 1000-dimension shape would decode into
// 80 MB; the reader stops at its budget instead.
func TestSharedTablesBudget(t *testing.T) {
	hostile := rawSpec{
		opcodes:      []rawOpcode{{dep: int32(OpMaxPool2D), hasDep: true}},
		operators:    []rawOperator{{}},
		tensorRepeat: 20000,
		bigShape:     1000,
	}.build()
	var err error
	got := allocated(func() { _, err = Read(hostile) })
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Read: %v, want ErrTooLarge", err)
	}
	if limit := uint64(len(hostile))*allocPerByte + allocSlack + 256<<10; got > limit {
		t.Errorf("Read allocated %d bytes for a %d-byte file, limit %d", got, len(hostile), limit)
	}
	t.Logf("%v (allocated %d bytes for %d file bytes)", err, got, len(hostile))

	// The same structure with few repeats is a legal file.
	small := rawSpec{
		opcodes:      []rawOpcode{{dep: int32(OpMaxPool2D), hasDep: true}},
		operators:    []rawOperator{{}},
		tensorRepeat: 3,
		bigShape:     4,
	}.build()
	if m, err := Read(small); err != nil || len(m.Subgraphs[0].Tensors) != 3 {
		t.Errorf("3 shared tensors: %v", err)
	}
}

func TestReadFile(t *testing.T) {
	if _, err := ReadFile(filepath.Join(t.TempDir(), "missing.tflite")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
	path := filepath.Join(t.TempDir(), "m.tflite")
	data, _ := Write(testModels()["softmax"])
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if m, err := ReadFile(path); err != nil || opNames(m)[0] != "SOFTMAX" {
		t.Errorf("ReadFile: %v", err)
	}
}

func TestNotTFLite(t *testing.T) {
	for name, data := range map[string][]byte{
		"empty":    nil,
		"short":    []byte("TFL3"),
		"png":      []byte("\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"),
		"zeros":    make([]byte, 64),
		"no-ident": append([]byte{8, 0, 0, 0, 'X', 'X', 'X', 'X'}, make([]byte, 32)...),
	} {
		_, err := Read(data)
		var fe *FormatError
		if !errors.As(err, &fe) || !(errors.Is(err, ErrTruncated) || errors.Is(err, ErrCorrupt)) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// Benchmarks: Read and Write of real models, against copying the file as a peer (the least
// any reader must do to own the bytes).
func benchModel(b *testing.B, name string) []byte {
	data, err := os.ReadFile(testenv.SharedPath(b, "models", name))
	if err != nil {
		b.Fatal(err)
	}
	return data
}

func BenchmarkRead(b *testing.B) {
	for _, name := range []string{"vww_96_int8.tflite", "mobilenet_v2_pytorch_int8_1x3x224x224.tflite"} {
		data := benchModel(b, name)
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Read(data); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(name+"/peer-copy", func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				_ = bytes.Clone(data)
			}
		})
	}
}

func BenchmarkWrite(b *testing.B) {
	for _, name := range []string{"vww_96_int8.tflite", "mobilenet_v2_pytorch_int8_1x3x224x224.tflite"} {
		m, err := Read(benchModel(b, name))
		if err != nil {
			b.Fatal(err)
		}
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Write(m); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func TestConstantData(t *testing.T) {
	if got, want := Int32Data([]int32{1, -2}), []byte{1, 0, 0, 0, 0xfe, 0xff, 0xff, 0xff}; string(got) != string(want) {
		t.Errorf("Int32Data = % x, want % x", got, want)
	}
	if got, want := Float32Data([]float32{1, -0.5}), []byte{0, 0, 0x80, 0x3f, 0, 0, 0, 0xbf}; string(got) != string(want) {
		t.Errorf("Float32Data = % x, want % x", got, want)
	}
}
