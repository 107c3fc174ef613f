package engine

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/cxr-edge/cxr-edge/edge/testenv"
	"github.com/cxr-edge/cxr-edge/edge/tflite"
)

// outputsOf copies every output's bytes.
func outputsOf(ip *Interpreter, n int) [][]byte {
	var out [][]byte
	for i := range n {
		out = append(out, bytes.Clone(ip.Output(i).Bytes()))
	}
	return out
}

func runSeed(t testing.TB, m *Model, ip *Interpreter, seed uint64) [][]byte {
	t.Helper()
	randomInputs(ip, len(m.Inputs()), seed)
	if err := ip.Invoke(context.Background()); err != nil {
		t.Fatal(err)
	}
	return outputsOf(ip, len(m.Outputs()))
}

func TestInvokeAllocatesNothing(t *testing.T) {
	models := []string{"vww_96_int8.tflite", "vww_96_float.tflite", "resnet8_cifar10_int8.tflite", "kws_dscnn_int8.tflite", "toycar_ae_int8_floatio.tflite", "split_concat_uint8.tflite"}
	for _, name := range models {
		for _, threads := range []int{1, 3} {
			t.Run(fmt.Sprintf("%s/threads=%d", name, threads), func(t *testing.T) {
				m, ip := sharedInterpreter(t, name, Options{Threads: threads})
				for i := range m.Inputs() {
					fillPattern(ip.Input(i))
				}
				ctx := context.Background()
				allocs := testing.AllocsPerRun(3, func() {
					if err := ip.Invoke(ctx); err != nil {
						t.Fatal(err)
					}
				})
				if allocs != 0 {
					t.Errorf("Invoke allocated %v times per run", allocs)
				}
			})
		}
	}
}

// deterministicModels are run with several thread counts; results must not change.
func deterministicModels() []string {
	ms := []string{"vww_96_int8.tflite", "vww_96_float.tflite", "resnet8_cifar10_int8.tflite", "kws_dscnn_int8.tflite", "person_detect_int8.tflite", "toycar_ae_int8_floatio.tflite"}
	if !raceEnabled { // ten times slower under -race
		ms = append(ms, "mobilenet_v2_pytorch_int8_1x3x224x224.tflite")
	}
	return ms
}

func TestThreadsGiveIdenticalBytes(t *testing.T) {
	for _, name := range deterministicModels() {
		t.Run(name, func(t *testing.T) {
			var ref [][]byte
			threadCounts := []int{1, 3, 4} // 3 splits rows unevenly
			if raceEnabled {
				threadCounts = []int{1, 4}
			}
			for _, threads := range threadCounts {
				m, err := loadShared(t, name, Options{Threads: threads})
				if err != nil {
					t.Fatal(err)
				}
				ip := m.NewInterpreter()
				got := runSeed(t, m, ip, 7)
				ip.Close()
				if ref == nil {
					ref = got
					continue
				}
				for o := range got {
					if !bytes.Equal(got[o], ref[o]) {
						t.Errorf("Threads=%d output %d differs from Threads=1", threads, o)
					}
				}
			}
		})
	}
}

// TestConcurrentInterpreters shares one Model between goroutines, each with its own
// interpreter and inputs; results must equal serial runs (run with -race).
func TestConcurrentInterpreters(t *testing.T) {
	for _, name := range []string{"resnet8_cifar10_int8.tflite", "vww_96_float.tflite"} {
		t.Run(name, func(t *testing.T) {
			m, err := loadShared(t, name, Options{Threads: 2})
			if err != nil {
				t.Fatal(err)
			}
			const workers, runs = 3, 2
			want := map[uint64][][]byte{}
			ip := m.NewInterpreter()
			for w := range workers {
				for r := range runs {
					seed := uint64(100*w + r)
					want[seed] = runSeed(t, m, ip, seed)
				}
			}
			ip.Close()
			var wg sync.WaitGroup
			errs := make(chan error, workers*runs)
			for w := range workers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					ip := m.NewInterpreter()
					defer ip.Close()
					for r := range runs {
						seed := uint64(100*w + r)
						randomInputs(ip, len(m.Inputs()), seed)
						if err := ip.Invoke(context.Background()); err != nil {
							errs <- err
							return
						}
						for o, b := range outputsOf(ip, len(m.Outputs())) {
							if !bytes.Equal(b, want[seed][o]) {
								errs <- fmt.Errorf("worker %d seed %d output %d differs from the serial run", w, seed, o)
							}
						}
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
		})
	}
}

func TestInvokeStopsOnCanceledContext(t *testing.T) {
	_, ip := sharedInterpreter(t, "resnet8_cifar10_int8.tflite", Options{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := ip.Invoke(ctx)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Invoke with a canceled context: %v", err)
	}
	if !strings.Contains(err.Error(), "operator 0") {
		t.Errorf("error %q should say where it stopped", err)
	}
}

// TestKeepTensors reads an intermediate through KeepTensors and checks it against the same
// model cut at that tensor (made a graph output).
func TestKeepTensors(t *testing.T) {
	path := testenv.SharedPath(t, "models", "vww_96_int8.tflite")
	tm, err := tflite.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sg := &tm.Subgraphs[0]
	mid := sg.Operators[len(sg.Operators)/2].Outputs[0]
	name := sg.Tensors[mid].Name
	// run loads a model and invokes it once on the fill pattern.
	run := func(tm *tflite.Model, opts Options) *Interpreter {
		t.Helper()
		m, err := Load(tm, opts)
		if err != nil {
			t.Fatal(err)
		}
		ip := m.NewInterpreter()
		t.Cleanup(ip.Close)
		fillPattern(ip.Input(0))
		if err := ip.Invoke(context.Background()); err != nil {
			t.Fatal(err)
		}
		return ip
	}
	ip := run(tm, Options{KeepTensors: []string{name}})
	kept, ok := ip.Tensor(name)
	if !ok {
		t.Fatalf("kept tensor %q not readable", name)
	}

	cut, _ := tflite.ReadFile(path)
	cut.Subgraphs[0].Outputs = []int32{mid}
	cut.Subgraphs[0].Operators = cut.Subgraphs[0].Operators[:len(sg.Operators)/2+1]
	ipc := run(cut, Options{})
	if !bytes.Equal(kept.Bytes(), ipc.Output(0).Bytes()) {
		t.Error("kept intermediate differs from the same tensor computed as an output")
	}
	if _, ok := ip.Tensor("no such tensor"); ok {
		t.Error("Tensor found a name that does not exist")
	}
	if _, err := Load(tm, Options{KeepTensors: []string{"no such tensor"}}); err == nil {
		t.Error("Load accepted an unknown KeepTensors name")
	}
}

// TestKeptTensorsDoNotShare checks the arena plan: tensors alive at the same time never
// share bytes, and kept tensors share with nothing.
func TestArenaPlan(t *testing.T) {
	tm, err := tflite.ReadFile(testenv.SharedPath(t, "models", "resnet8_cifar10_int8.tflite"))
	if err != nil {
		t.Fatal(err)
	}
	keep := tm.Subgraphs[0].Tensors[tm.Subgraphs[0].Operators[3].Outputs[0]].Name
	m, err := Load(tm, Options{KeepTensors: []string{keep}})
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	ts := m.tensors
	for i := range ts {
		if ts[i].offset < 0 {
			continue
		}
		total += ts[i].bytes
		for j := range i {
			a, b := &ts[i], &ts[j]
			if b.offset < 0 || a.bytes == 0 || b.bytes == 0 {
				continue
			}
			live := a.first <= b.last && b.first <= a.last
			overlap := a.offset < b.offset+b.bytes && b.offset < a.offset+a.bytes
			if live && overlap {
				t.Errorf("tensors %q and %q are alive together and share arena bytes", a.info.Name, b.info.Name)
			}
		}
	}
	if m.ArenaBytes() >= total {
		t.Errorf("arena %d bytes, activations total %d: no reuse", m.ArenaBytes(), total)
	}
	t.Logf("arena %d bytes for %d bytes of activations", m.ArenaBytes(), total)
}

func TestModelInfo(t *testing.T) {
	m, err := loadShared(t, "vww_96_int8.tflite", Options{})
	if err != nil {
		t.Fatal(err)
	}
	in := m.Inputs()
	if len(in) != 1 || in[0].Type != tflite.Int8 || fmt.Sprint(in[0].Shape) != "[1 96 96 3]" || len(in[0].Scale) != 1 || in[0].NumElements() != 96*96*3 {
		t.Fatalf("input info %+v", in)
	}
	in[0].Shape[0] = 99 // callers get copies
	if m.Inputs()[0].Shape[0] != 1 {
		t.Error("Inputs exposes the model's own slices")
	}
	ip := m.NewInterpreter()
	defer ip.Close()
	if ip.Input(0).Float32() != nil || ip.Input(0).Uint8() != nil || ip.Input(0).Int32() != nil {
		t.Error("typed accessor of another type should be nil")
	}
	if len(ip.Input(0).Int8()) != 96*96*3 {
		t.Error("Int8 view has the wrong length")
	}
	if _, ok := ip.Tensor(in[0].Name); !ok {
		t.Error("input not found by name")
	}
}

func TestOptionDefaults(t *testing.T) {
	m, err := loadShared(t, "kws_dscnn_int8.tflite", Options{})
	if err != nil {
		t.Fatal(err)
	}
	if m.threads != runtime.GOMAXPROCS(0) {
		t.Errorf("Threads 0 should mean GOMAXPROCS (%d), got %d", runtime.GOMAXPROCS(0), m.threads)
	}
	if _, err := loadShared(t, "kws_dscnn_int8.tflite", Options{Threads: maxThreads}); err != nil {
		t.Errorf("Threads %d: %v", maxThreads, err)
	}
	for _, bad := range []Options{{Threads: -1}, {Threads: 257}, {Rounding: Rounding(9)}} {
		if _, err := loadShared(t, "kws_dscnn_int8.tflite", bad); err == nil {
			t.Errorf("Load accepted %+v", bad)
		}
	}
}

// TestLoadRefuses checks that unsupported and broken models are refused with an error that
// names the problem, and never panic.
func TestLoadRefuses(t *testing.T) {
	simple := func(code tflite.BuiltinOp, typ tflite.TensorType, opts tflite.Options) *tflite.Model {
		return unaryModel(code, 1, opts, typ, []int32{1, 8}, nil, nil)
	}
	cases := []struct {
		name  string
		model func() *tflite.Model
		is    error
		want  string
	}{
		{"unknown op", func() *tflite.Model {
			b := newBuilder()
			x := b.tensor("x", tflite.Float32, []int32{1, 4}, nil, nil)
			y := b.tensor("y", tflite.Float32, []int32{1, 4}, nil, nil)
			z := b.tensor("z", tflite.Float32, []int32{1, 4}, nil, nil)
			b.op(tflite.OpRelu, 1, nil, []int32{x}, []int32{y})
			b.op(tflite.BuiltinOp(23), 1, nil, []int32{y}, []int32{z}) // RESIZE_BILINEAR
			b.io([]int32{x}, []int32{z})
			return b.m
		}, ErrUnsupported, "operator 1: RESIZE_BILINEAR"},
		{"custom op", func() *tflite.Model {
			m := simple(tflite.OpCustom, tflite.Float32, nil)
			m.OperatorCodes[0].CustomCode = "TFLite_Detection_PostProcess"
			return m
		}, ErrUnsupported, `CUSTOM "TFLite_Detection_PostProcess"`},
		{"int16 relu", func() *tflite.Model {
			return unaryModel(tflite.OpRelu, 1, nil, tflite.Int16, []int32{1, 8}, q8(0.1, 0), q8(0.1, 0))
		}, ErrUnsupported, "operator 0 (RELU)"},
		{"int8 without quantization", func() *tflite.Model { return simple(tflite.OpLogistic, tflite.Int8, nil) }, ErrInvalidModel, "operator 0 (LOGISTIC)"},
		{"conv output shape", func() *tflite.Model {
			m := convModel(convSpec{typ: tflite.Int8, h: 6, w: 6, ic: 2, oc: 3, kh: 3, kw: 3, stride: 1, dil: 1})
			m.Subgraphs[0].Tensors[3].Shape = []int32{1, 5, 6, 3}
			return m
		}, ErrInvalidModel, "operator 0 (CONV_2D)"},
		{"constant of wrong size", func() *tflite.Model {
			m := convModel(convSpec{typ: tflite.Int8, h: 6, w: 6, ic: 2, oc: 3, kh: 3, kw: 3, stride: 1, dil: 1})
			m.Buffers[m.Subgraphs[0].Tensors[1].Buffer].Data = []byte{1, 2, 3}
			return m
		}, ErrInvalidModel, "has 3 bytes of data"},
		{"read before written", func() *tflite.Model {
			m := simple(tflite.OpRelu, tflite.Float32, nil)
			m.Subgraphs[0].Inputs = nil
			return m
		}, ErrInvalidModel, "before it is written"},
		{"tensor index out of range", func() *tflite.Model {
			m := simple(tflite.OpRelu, tflite.Float32, nil)
			m.Subgraphs[0].Operators[0].Inputs = []int32{42}
			return m
		}, ErrInvalidModel, "out of range"},
		{"opcode index out of range", func() *tflite.Model {
			m := simple(tflite.OpRelu, tflite.Float32, nil)
			m.Subgraphs[0].Operators[0].OpcodeIndex = 5
			return m
		}, ErrInvalidModel, "opcode index"},
		{"no subgraph", func() *tflite.Model { return &tflite.Model{} }, ErrInvalidModel, "no subgraph"},
		{"negative dimension", func() *tflite.Model {
			m := simple(tflite.OpRelu, tflite.Float32, nil)
			m.Subgraphs[0].Tensors[0].Shape = []int32{1, -3}
			return m
		}, ErrInvalidModel, "shape"},
		// Hostile shapes and options: each would overflow an int on 32-bit ARM, panic in
		// Invoke or make every interpreter allocate gigabytes if Load let it through.
		{"zero-size tensor with huge dimensions", func() *tflite.Model {
			m := simple(tflite.OpRelu, tflite.Float32, nil)
			for i := range m.Subgraphs[0].Tensors {
				m.Subgraphs[0].Tensors[i].Shape = []int32{0, 1 << 20, 1 << 20}
			}
			return m
		}, ErrInvalidModel, "shape"},
		{"dilation past the window limit", func() *tflite.Model {
			return convModel(convSpec{typ: tflite.Int8, h: 6, w: 6, ic: 2, oc: 3, kh: 3, kw: 3, stride: 1, dil: 1 << 30})
		}, ErrUnsupported, "window over"},
		{"stride past the window limit", func() *tflite.Model {
			return poolModel(tflite.OpMaxPool2D, tflite.Float32, nil, 2, 1<<30, tflite.PaddingSame)
		}, ErrUnsupported, "window over"},
		{"fully connected product wraps on 32 bits", func() *tflite.Model {
			// 65536 rows × 65536 outputs is 2³², 0 in a 32-bit int: the output of 0 values
			// must not pass for it.
			b := newBuilder()
			x := b.tensor("x", tflite.Int8, []int32{1 << 16, 1}, q8(0.05, 0), nil)
			w := b.tensor("w", tflite.Int8, []int32{1 << 16, 1}, q8(0.004, 0), make([]byte, 1<<16))
			y := b.tensor("y", tflite.Int8, []int32{0, 1 << 16}, q8(0.1, 0), nil)
			b.op(tflite.OpFullyConnected, 4, &tflite.FullyConnectedOptions{}, []int32{x, w}, []int32{y})
			b.io([]int32{x}, []int32{y})
			return b.m
		}, ErrInvalidModel, "output shape"},
		{"int32 paddings whose sum wraps", func() *tflite.Model {
			return padModel(tflite.Int32Data([]int32{0, 0, 1<<31 - 1, 1<<31 - 1}), tflite.Int32)
		}, ErrInvalidModel, "output shape"},
		{"int64 paddings outside int32", func() *tflite.Model {
			b := make([]byte, 32)
			for i, v := range []uint64{0, 0, 1<<63 - 1, 1<<63 - 1} {
				binary.LittleEndian.PutUint64(b[8*i:], v)
			}
			return padModel(b, tflite.Int64)
		}, ErrInvalidModel, "outside int32"},
		{"infinite scale", func() *tflite.Model {
			inf := float32(math.Inf(1))
			return unaryModel(tflite.OpLogistic, 1, nil, tflite.Int8, []int32{1, 8}, q8(inf, 0), q8(1.0/256, -128))
		}, ErrInvalidModel, "scale +Inf"},
		{"NaN softmax beta", func() *tflite.Model {
			return unaryModel(tflite.OpSoftmax, 1, &tflite.SoftmaxOptions{Beta: float32(math.NaN())}, tflite.Int8, []int32{1, 8}, q8(0.1, 0), q8(1.0/256, -128))
		}, ErrInvalidModel, "beta NaN"},
		{"infinite leaky relu alpha", func() *tflite.Model {
			return unaryModel(tflite.OpLeakyRelu, 1, &tflite.LeakyReluOptions{Alpha: float32(math.Inf(-1))}, tflite.Int8, []int32{1, 8}, q8(0.1, 0), q8(0.1, 0))
		}, ErrInvalidModel, "alpha -Inf"},
		{"int8 zero point out of range", func() *tflite.Model {
			return unaryModel(tflite.OpLogistic, 1, nil, tflite.Int8, []int32{1, 8}, q8(0.1, 1000), q8(1.0/256, -128))
		}, ErrInvalidModel, "zero point 1000"},
		{"concatenation input off the axis", func() *tflite.Model {
			m := synthModel(t, "concat_f32_axis1")
			m.Subgraphs[0].Tensors[1].Shape = []int32{2, 1, 3}
			return m
		}, ErrInvalidModel, "input 1: invalid model: float32 [2 1 3] does not fit float32 [2 4 2] along axis 1"},
		{"concatenation inputs past the output", func() *tflite.Model {
			m := synthModel(t, "concat_f32_axis1")
			m.Subgraphs[0].Tensors[1].Shape = []int32{2, 2, 2}
			return m
		}, ErrInvalidModel, "inputs give more than 4 along axis 1"},
		{"missing conv options", func() *tflite.Model {
			m := convModel(convSpec{typ: tflite.Float32, h: 6, w: 6, ic: 2, oc: 3, kh: 3, kw: 3, stride: 1, dil: 1})
			m.Subgraphs[0].Operators[0].Options = nil
			return m
		}, ErrInvalidModel, "Conv2DOptions"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Load(c.model(), Options{})
			if err == nil {
				t.Fatal("Load accepted the model")
			}
			if !errors.Is(err, c.is) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q: want %v and %q", err, c.is, c.want)
			}
		})
	}
	if _, err := Load(nil, Options{}); !errors.Is(err, ErrInvalidModel) {
		t.Errorf("Load(nil): %v", err)
	}
	if _, err := LoadBytes([]byte("not a model"), Options{}); err == nil {
		t.Error("LoadBytes accepted garbage")
	}
	if _, err := LoadFile("testdata/does-not-exist.tflite", Options{}); err == nil {
		t.Error("LoadFile of a missing file succeeded")
	}
}

// synthModel builds the synthetic model called name.
func synthModel(t *testing.T, name string) *tflite.Model {
	for _, c := range synthCases() {
		if c.name == name {
			return c.build()
		}
	}
	t.Fatalf("no synthetic case %q", name)
	return nil
}

// padModel pads a float32 [1,4] to [1,2], which no padding fits: the paddings given (of
// type typ) must be refused however their sum wraps.
func padModel(paddings []byte, typ tflite.TensorType) *tflite.Model {
	b := newBuilder()
	x := b.tensor("x", tflite.Float32, []int32{1, 4}, nil, nil)
	p := b.tensor("paddings", typ, []int32{2, 2}, nil, paddings)
	y := b.tensor("y", tflite.Float32, []int32{1, 2}, nil, nil)
	b.op(tflite.OpPad, 1, &tflite.PadOptions{}, []int32{x, p}, []int32{y})
	b.io([]int32{x}, []int32{y})
	return b.m
}

// TestInputsSurviveInvoke: inputs are not overwritten, so Invoke can be repeated.
func TestInputsSurviveInvoke(t *testing.T) {
	m, ip := sharedInterpreter(t, "kws_dscnn_int8.tflite", Options{})
	first := runSeed(t, m, ip, 3)
	if err := ip.Invoke(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(first[0], ip.Output(0).Bytes()) {
		t.Error("a second Invoke on the same inputs gave another result")
	}
}

func TestRunChecksInputSizes(t *testing.T) {
	m, ip := sharedInterpreter(t, "kws_dscnn_int8.tflite", Options{})
	n := m.Inputs()[0].NumElements()
	want := runSeed(t, m, ip, 5)
	raw := bytes.Clone(ip.Input(0).Bytes())
	clear(ip.Input(0).Bytes())
	if err := ip.Run(context.Background(), raw); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(want[0], ip.Output(0).Bytes()) {
		t.Error("Run gave another result than writing the input and Invoke")
	}
	for _, bad := range [][][]byte{{make([]byte, n-1)}, {}, {raw, raw}} {
		if err := ip.Run(context.Background(), bad...); !errors.Is(err, ErrInputSize) {
			t.Errorf("Run with %d inputs: %v", len(bad), err)
		}
	}
	if !bytes.Equal(raw, ip.Input(0).Bytes()) {
		t.Error("a refused Run changed the input")
	}
}

// TestOverflowSaturates: a float→int conversion past int32 used to give MinInt32 on amd64
// (so a huge input quantized to -128) and saturate on ARM; both now give the top of the
// range, as LiteRT does. CI runs this on amd64 and, under qemu, on arm64 and armv7.
func TestOverflowSaturates(t *testing.T) {
	b := newBuilder()
	x := b.tensor("x", tflite.Float32, []int32{1, 4}, nil, nil)
	y := b.tensor("y", tflite.Int8, []int32{1, 4}, q8(1e-3, 0), nil)
	b.op(tflite.OpQuantize, 1, nil, []int32{x}, []int32{y})
	b.io([]int32{x}, []int32{y})
	m, err := Load(b.m, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ip := m.NewInterpreter()
	defer ip.Close()
	copy(ip.Input(0).Float32(), []float32{3e9, -3e9, 1e38, 0.0514})
	if err := ip.Invoke(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got, want := ip.Output(0).Int8(), []int8{127, -128, 127, 51}; !slices.Equal(got, want) {
		t.Errorf("QUANTIZE gave %v, want %v", got, want)
	}
	for _, c := range []struct {
		in   float64
		want int32
	}{{0, 0}, {-5, -5}, {1 << 30, 1 << 30}, {3e9, 1 << 30}, {-3e9, -1 << 30}, {math.Inf(1), 1 << 30}, {math.NaN(), 0}} {
		if got := sat32(c.in); got != c.want {
			t.Errorf("sat32(%g) = %d, want %d", c.in, got, c.want)
		}
	}
}
