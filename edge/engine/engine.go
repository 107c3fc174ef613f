// Package engine is a pure-Go TensorFlow Lite interpreter for the int8, uint8 and float32
// CNN op subset (convolutions, pooling, fully connected, element-wise, softmax, ...).
//
// Integer kernels follow TFLite's arithmetic (QuantizeMultiplier, MultiplyByQuantizedMultiplier,
// look-up tables for LOGISTIC and SOFTMAX). By default convolutions rescale in float32 as
// LiteRT's XNNPACK kernels do, which makes outputs equal LiteRT's bit for bit; Options.Rounding
// selects the fixed-point rounding of TFLite's reference kernels and tflite-micro instead.
//
// A Model is loaded once: operators are checked, weights are packed and requantisation
// constants computed, and every activation is given a place in one arena planned from tensor
// lifetimes. A Model is safe for concurrent use and shares its weights; each goroutine runs
// its own Interpreter, whose Invoke allocates nothing.
package engine

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"slices"
	"unsafe"

	"github.com/cxr-edge/cxr-edge/edge/tflite"
)

// ErrUnsupported is wrapped by Load errors for operators, types or options the engine does
// not implement.
var ErrUnsupported = errors.New("unsupported")

// ErrInvalidModel is wrapped by Load errors for models that are inconsistent (wrong shapes,
// missing tensors, bad quantization).
var ErrInvalidModel = errors.New("invalid model")

// Options configures Load. The zero value is ready to use.
type Options struct {
	// Threads is the number of goroutines an Interpreter uses for the large operators,
	// at most 256 (each has its own scratch buffers). 0 means runtime.GOMAXPROCS(0).
	// Results do not depend on it.
	Threads int
	// KeepTensors names intermediate tensors that stay readable through
	// Interpreter.Tensor after Invoke. They get arena space of their own.
	KeepTensors []string
	// Rounding is how integer kernels rescale accumulators; the zero value RoundLiteRT
	// matches LiteRT bit for bit, RoundDouble matches TFLite's reference kernels and
	// tflite-micro.
	Rounding Rounding
}

// maxThreads bounds Options.Threads: a typo such as 1e6 would otherwise start a million
// goroutines, each with its own scratch, in every interpreter.
const maxThreads = 256

// TensorInfo describes a tensor of the model.
type TensorInfo struct {
	Name               string
	Type               tflite.TensorType
	Shape              []int
	Scale              []float32 // nil when not quantized
	ZeroPoint          []int64
	QuantizedDimension int
}

// NumElements is the product of Shape.
func (ti TensorInfo) NumElements() int {
	n := 1
	for _, d := range ti.Shape {
		n *= d
	}
	return n
}

func (ti TensorInfo) clone() TensorInfo {
	ti.Shape = slices.Clone(ti.Shape)
	ti.Scale = slices.Clone(ti.Scale)
	ti.ZeroPoint = slices.Clone(ti.ZeroPoint)
	return ti
}

// tensorMeta is the load-time description of one tensor of subgraph 0.
type tensorMeta struct {
	info   TensorInfo
	n      int    // elements
	bytes  int    // n × element size
	konst  []byte // constant data (aligned), shared by all interpreters
	offset int    // arena offset; -1 when the tensor has no arena space
	first  int    // index of the producing op (-1: graph input)
	last   int    // index of the last consuming op
}

func (t *tensorMeta) scale() float32 {
	if len(t.info.Scale) == 0 {
		return 0
	}
	return t.info.Scale[0]
}

func (t *tensorMeta) zp() int32 {
	if len(t.info.ZeroPoint) == 0 {
		return 0
	}
	return int32(t.info.ZeroPoint[0])
}

func (t *tensorMeta) quantized() bool { return len(t.info.Scale) > 0 }

// Model is a loaded, validated model, ready to create interpreters. It is immutable and
// safe for concurrent use.
type Model struct {
	tensors   []tensorMeta
	kernels   []kernel
	opNames   []string
	inputs    []int
	outputs   []int
	names     map[string]int // readable tensors: inputs, outputs, kept intermediates
	arenaSize int
	threads   int
	scratch   scratchSize
}

// scratchSize counts the elements of each worker's scratch buffers. Preparations compute
// them in int64 (convTile times a filter row can pass 2³¹), and Load refuses a total over
// maxTensorBytes before any interpreter allocates it.
type scratchSize struct{ i8, i32, f32, ints int64 }

func (s *scratchSize) grow(i8, i32, f32 int64) {
	s.i8 = max(s.i8, i8)
	s.i32 = max(s.i32, i32)
	s.f32 = max(s.f32, f32)
}

// bytes is the memory one worker's scratch takes.
func (s *scratchSize) bytes() int64 { return s.i8 + 4*s.i32 + 4*s.f32 + 8*s.ints }

// LoadFile reads and loads a .tflite file.
func LoadFile(path string, opts Options) (*Model, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("engine: %w", err)
	}
	m, err := LoadBytes(data, opts)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return m, nil
}

// LoadBytes decodes and loads a .tflite flatbuffer.
func LoadBytes(data []byte, opts Options) (*Model, error) {
	tm, err := tflite.Read(data)
	if err != nil {
		return nil, fmt.Errorf("engine: %w", err)
	}
	return Load(tm, opts)
}

// Load prepares m for execution. It refuses operators, types and options the engine does
// not implement with an error naming the operator and its index. The returned Model
// references m's constant buffers; m must not be modified afterwards.
func Load(m *tflite.Model, opts Options) (model *Model, err error) {
	defer func() {
		// Preparation checks shapes before indexing; this is a last line of defence so
		// that a hostile file yields an error, never a crash.
		if r := recover(); r != nil {
			model, err = nil, fmt.Errorf("engine: %w: %v", ErrInvalidModel, r)
		}
	}()
	if m == nil || len(m.Subgraphs) == 0 {
		return nil, fmt.Errorf("engine: %w: no subgraph", ErrInvalidModel)
	}
	if opts.Threads < 0 || opts.Threads > maxThreads {
		return nil, fmt.Errorf("engine: Options.Threads %d is outside 0..%d", opts.Threads, maxThreads)
	}
	if opts.Rounding < RoundLiteRT || opts.Rounding > RoundDouble {
		return nil, fmt.Errorf("engine: Options.Rounding %d is unknown", opts.Rounding)
	}
	l := &loader{src: m, sg: &m.Subgraphs[0], m: &Model{threads: opts.Threads}, rounding: opts.Rounding}
	if l.m.threads == 0 {
		l.m.threads = runtime.GOMAXPROCS(0)
	}
	if err := l.tensors(); err != nil {
		return nil, fmt.Errorf("engine: %w", err)
	}
	if err := l.operators(); err != nil {
		return nil, fmt.Errorf("engine: %w", err)
	}
	if err := l.plan(opts.KeepTensors); err != nil {
		return nil, fmt.Errorf("engine: %w", err)
	}
	if b := l.m.scratch.bytes(); b > maxTensorBytes {
		return nil, fmt.Errorf("engine: %w: operators need %d bytes of scratch per thread, over %d", ErrUnsupported, b, maxTensorBytes)
	}
	return l.m, nil
}

// Inputs describes the model's input tensors.
func (m *Model) Inputs() []TensorInfo { return m.infos(m.inputs) }

// Outputs describes the model's output tensors.
func (m *Model) Outputs() []TensorInfo { return m.infos(m.outputs) }

// ArenaBytes is the size of the activation arena each Interpreter allocates.
func (m *Model) ArenaBytes() int { return m.arenaSize }

func (m *Model) infos(idx []int) []TensorInfo {
	out := make([]TensorInfo, len(idx))
	for i, t := range idx {
		out[i] = m.tensors[t].info.clone()
	}
	return out
}

// Tensor is an interpreter's view of one tensor's data. The typed accessors return nil when
// the tensor has another type. Write inputs through them before Invoke; read outputs after.
type Tensor struct {
	meta *tensorMeta
	b    []byte
}

// Info describes the tensor.
func (t *Tensor) Info() TensorInfo { return t.meta.info.clone() }

// Bytes is the raw little-endian data.
func (t *Tensor) Bytes() []byte { return t.b }

// Int8 is the data of an int8 tensor.
func (t *Tensor) Int8() []int8 {
	if t.meta.info.Type != tflite.Int8 {
		return nil
	}
	return asI8(t.b)
}

// Uint8 is the data of a uint8 tensor.
func (t *Tensor) Uint8() []uint8 {
	if t.meta.info.Type != tflite.Uint8 {
		return nil
	}
	return t.b
}

// Float32 is the data of a float32 tensor.
func (t *Tensor) Float32() []float32 {
	if t.meta.info.Type != tflite.Float32 {
		return nil
	}
	return asF32(t.b)
}

// Int32 is the data of an int32 tensor.
func (t *Tensor) Int32() []int32 {
	if t.meta.info.Type != tflite.Int32 {
		return nil
	}
	return asI32(t.b)
}

// Interpreter runs a Model. It is not safe for concurrent use: create one per goroutine.
type Interpreter struct {
	m       *Model
	arena   []uint64 // 8-byte aligned backing store
	t       []Tensor
	scratch []scratch
	pool    *pool
	closed  bool
}

type scratch struct {
	i8   []int8
	i32  []int32
	f32  []float32
	ints []int
}

// NewInterpreter allocates an arena and a small worker pool for m. Its workers stop when
// Close is called or the Interpreter becomes unreachable.
func (m *Model) NewInterpreter() *Interpreter {
	ip := &Interpreter{m: m}
	ip.arena = make([]uint64, (m.arenaSize+7)/8)
	var base []byte
	if len(ip.arena) > 0 {
		base = unsafe.Slice((*byte)(unsafe.Pointer(&ip.arena[0])), len(ip.arena)*8)
	}
	ip.t = make([]Tensor, len(m.tensors))
	for i := range m.tensors {
		tm := &m.tensors[i]
		ip.t[i].meta = tm
		switch {
		case tm.konst != nil:
			ip.t[i].b = tm.konst
		case tm.offset >= 0:
			ip.t[i].b = base[tm.offset : tm.offset+tm.bytes : tm.offset+tm.bytes]
		}
	}
	ip.scratch = make([]scratch, m.threads)
	for w := range ip.scratch {
		ip.scratch[w] = scratch{
			i8:   make([]int8, m.scratch.i8),
			i32:  make([]int32, m.scratch.i32),
			f32:  make([]float32, m.scratch.f32),
			ints: make([]int, m.scratch.ints),
		}
	}
	if m.threads > 1 {
		ip.pool = newPool(m.threads - 1)
		runtime.AddCleanup(ip, func(p *pool) { p.close() }, ip.pool)
	}
	return ip
}

// Close stops the interpreter's worker goroutines; Invoke and Run fail afterwards. Calling
// Close is optional: the workers also stop once the Interpreter is garbage collected, Close
// only releases them sooner.
func (ip *Interpreter) Close() {
	ip.closed = true
	if ip.pool != nil {
		ip.pool.close()
	}
}

// Input is the i-th model input; it panics if i is out of range, like a slice index.
func (ip *Interpreter) Input(i int) *Tensor { return &ip.t[ip.m.inputs[i]] }

// Output is the i-th model output.
func (ip *Interpreter) Output(i int) *Tensor { return &ip.t[ip.m.outputs[i]] }

// Tensor finds an input, an output or an intermediate named in Options.KeepTensors.
func (ip *Interpreter) Tensor(name string) (*Tensor, bool) {
	i, ok := ip.m.names[name]
	if !ok {
		return nil, false
	}
	return &ip.t[i], true
}

// Invoke runs the model on the current inputs. It checks ctx between operators and
// allocates nothing.
func (ip *Interpreter) Invoke(ctx context.Context) (err error) {
	if ip.closed {
		// Without this the first parallel operator would send to the stopped pool.
		return errors.New("engine: Invoke on a closed Interpreter")
	}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("engine: internal error: %v", r)
		}
	}()
	for i, k := range ip.m.kernels {
		if e := ctx.Err(); e != nil {
			return fmt.Errorf("engine: stopped before operator %d (%s): %w", i, ip.m.opNames[i], e)
		}
		k.eval(ip)
	}
	return nil
}

// ErrInputSize is wrapped by Run when an input has the wrong number of bytes.
var ErrInputSize = errors.New("input size mismatch")

// Run copies raw little-endian bytes into the model's inputs, one slice per input of exactly
// its size, and invokes. Outputs are then read with Output. It allocates nothing.
func (ip *Interpreter) Run(ctx context.Context, inputs ...[]byte) error {
	if len(inputs) != len(ip.m.inputs) {
		return fmt.Errorf("engine: %w: %d inputs given, the model has %d", ErrInputSize, len(inputs), len(ip.m.inputs))
	}
	for i, in := range inputs {
		dst := ip.t[ip.m.inputs[i]].b
		if len(in) != len(dst) {
			return fmt.Errorf("engine: %w: input %d has %d bytes, tensor %q needs %d", ErrInputSize, i, len(in), ip.t[ip.m.inputs[i]].meta.info.Name, len(dst))
		}
	}
	for i, in := range inputs {
		copy(ip.t[ip.m.inputs[i]].b, in)
	}
	return ip.Invoke(ctx)
}

// kernel is a prepared operator.
type kernel interface {
	eval(ip *Interpreter)
}

func (ip *Interpreter) i8(t int) []int8     { return asI8(ip.t[t].b) }
func (ip *Interpreter) u8(t int) []uint8    { return ip.t[t].b }
func (ip *Interpreter) f32(t int) []float32 { return asF32(ip.t[t].b) }

func asI8(b []byte) []int8 {
	if len(b) == 0 {
		return nil
	}
	return unsafe.Slice((*int8)(unsafe.Pointer(&b[0])), len(b))
}

func asF32(b []byte) []float32 {
	if len(b) < 4 {
		return nil
	}
	return unsafe.Slice((*float32)(unsafe.Pointer(&b[0])), len(b)/4)
}

func asI32(b []byte) []int32 {
	if len(b) < 4 {
		return nil
	}
	return unsafe.Slice((*int32)(unsafe.Pointer(&b[0])), len(b)/4)
}
