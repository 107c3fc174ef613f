// Package tflite reads, validates and writes TensorFlow Lite flatbuffer models (.tflite).
//
// The in-memory Model mirrors the subset of the TFLite schema that CNN classifiers use.
// Read validates every offset, index and length against the file before use, so a corrupt
// or hostile file yields an error, never a panic. Write produces a file that Google's
// runtime loads; Read(Write(m)) equals m.
//
// The interpreter that executes a Model lives in package engine.
package tflite

// TensorType is the schema's TensorType enum (not LiteRT's C ElementType numbering).
type TensorType int8

// Tensor types used by CNN models; the numbering is the schema's.
const (
	Float32 TensorType = 0
	Float16 TensorType = 1
	Int32   TensorType = 2
	Uint8   TensorType = 3
	Int64   TensorType = 4
	String  TensorType = 5
	Bool    TensorType = 6
	Int16   TensorType = 7
	Int8    TensorType = 9
)

// BuiltinOp is the schema's BuiltinOperator enum.
type BuiltinOp int32

// Builtin operators the engine knows about (schema numbering).
const (
	OpAdd             BuiltinOp = 0
	OpAveragePool2D   BuiltinOp = 1
	OpConcatenation   BuiltinOp = 2
	OpConv2D          BuiltinOp = 3
	OpDepthwiseConv2D BuiltinOp = 4
	OpDequantize      BuiltinOp = 6
	OpFullyConnected  BuiltinOp = 9
	OpLogistic        BuiltinOp = 14
	OpMaxPool2D       BuiltinOp = 17
	OpMul             BuiltinOp = 18
	OpRelu            BuiltinOp = 19
	OpRelu6           BuiltinOp = 21
	OpReshape         BuiltinOp = 22
	OpSoftmax         BuiltinOp = 25
	OpCustom          BuiltinOp = 32
	OpPad             BuiltinOp = 34
	OpTranspose       BuiltinOp = 39
	OpMean            BuiltinOp = 40
	OpSub             BuiltinOp = 41
	OpSqueeze         BuiltinOp = 43
	OpPadV2           BuiltinOp = 60
	OpLeakyRelu       BuiltinOp = 98
	OpQuantize        BuiltinOp = 114
	OpHardSwish       BuiltinOp = 117

	// OpPlaceholderForGreaterOpCodes is what deprecated_builtin_code holds for ops ≥ 127.
	OpPlaceholderForGreaterOpCodes BuiltinOp = 127
)

// Activation is the schema's ActivationFunctionType, fused into many ops.
type Activation int8

// Fused activations.
const (
	ActNone      Activation = 0
	ActRelu      Activation = 1
	ActReluN1To1 Activation = 2
	ActRelu6     Activation = 3
	ActTanh      Activation = 4
	ActSignBit   Activation = 5
)

// Padding is the schema's Padding enum. The zero value is SAME, as in the schema.
type Padding int8

// Paddings.
const (
	PaddingSame  Padding = 0
	PaddingValid Padding = 1
)

// Model is a decoded .tflite file.
type Model struct {
	Version        uint32
	OperatorCodes  []OperatorCode
	Subgraphs      []Subgraph
	Description    string
	Buffers        []Buffer // Buffers[0] is the empty sentinel.
	MetadataBuffer []int32
	Metadata       []Metadata
	SignatureDefs  []SignatureDef
}

// OperatorCode names the operator kind an Operator runs.
type OperatorCode struct {
	// Builtin is the resolved operator: max(deprecated_builtin_code, builtin_code).
	Builtin    BuiltinOp
	CustomCode string
	Version    int32 // schema default 1
}

// Subgraph is a graph of tensors and operators; subgraph 0 is the model's main graph.
type Subgraph struct {
	Tensors   []Tensor
	Inputs    []int32    // tensor indices
	Outputs   []int32    // tensor indices
	Operators []Operator // in execution order
	Name      string
}

// Tensor describes one tensor of a subgraph.
type Tensor struct {
	Shape          []int32
	Type           TensorType
	Buffer         uint32 // index into Model.Buffers; 0 or an empty buffer = not constant
	Name           string
	Quantization   *Quantization // nil when the file has none
	IsVariable     bool
	ShapeSignature []int32 // nil when absent; -1 marks an unknown dimension
	HasRank        bool
}

// Quantization holds affine quantization parameters: real = Scale × (q − ZeroPoint).
// Per-channel parameters have len(Scale) == Shape[QuantizedDimension].
type Quantization struct {
	Min                []float32
	Max                []float32
	Scale              []float32
	ZeroPoint          []int64
	QuantizedDimension int32
}

// Operator is one node of a subgraph.
type Operator struct {
	OpcodeIndex uint32
	Inputs      []int32 // -1 marks an optional input left out
	Outputs     []int32
	// Options is the builtin options table, one of the *Options types of this package
	// (*RawOptions for operators it does not model), or nil when the file has none. An
	// empty table (e.g. PAD's) is a non-nil empty struct; absent fields take the schema's
	// defaults (dilations 1, pot_scale_int16 true).
	Options       Options
	CustomOptions []byte
	Intermediates []int32
	// MutatingVariableInputs flags the inputs a stateful op (RNN, LSTM) writes to; nil when
	// absent, as in every CNN.
	MutatingVariableInputs []bool
}

// Buffer holds constant tensor data.
type Buffer struct {
	// Data is the raw little-endian contents. After Read it aliases the input slice.
	Data []byte
	// Offset and Size locate data outside the flatbuffer (files over 2 GB); unsupported
	// for execution but preserved.
	Offset uint64
	Size   uint64
}

// Metadata is a named metadata buffer, e.g. "min_runtime_version" or our operating point.
type Metadata struct {
	Name   string
	Buffer uint32
}

// SignatureDef names the inputs and outputs of a subgraph.
type SignatureDef struct {
	Inputs        []TensorMap
	Outputs       []TensorMap
	SignatureKey  string
	SubgraphIndex uint32
}

// TensorMap maps a signature name to a tensor index.
type TensorMap struct {
	Name        string
	TensorIndex uint32
}

// Options is a builtin options table. OptionsType returns its BuiltinOptions union tag.
type Options interface {
	OptionsType() uint8
}

// Conv2DOptions configures CONV_2D. Dilations default to 1.
type Conv2DOptions struct {
	Padding           Padding
	StrideW, StrideH  int32
	Activation        Activation
	DilationW         int32
	DilationH         int32
	QuantizedBiasType TensorType
}

// DepthwiseConv2DOptions configures DEPTHWISE_CONV_2D. Dilations default to 1.
type DepthwiseConv2DOptions struct {
	Padding          Padding
	StrideW, StrideH int32
	DepthMultiplier  int32
	Activation       Activation
	DilationW        int32
	DilationH        int32
}

// Pool2DOptions configures MAX_POOL_2D and AVERAGE_POOL_2D.
type Pool2DOptions struct {
	Padding          Padding
	StrideW, StrideH int32
	FilterW, FilterH int32
	Activation       Activation
}

// FullyConnectedOptions configures FULLY_CONNECTED.
type FullyConnectedOptions struct {
	Activation               Activation
	WeightsFormat            int8
	KeepNumDims              bool
	AsymmetricQuantizeInputs bool
	QuantizedBiasType        TensorType
}

// SoftmaxOptions configures SOFTMAX.
type SoftmaxOptions struct{ Beta float32 }

// ConcatenationOptions configures CONCATENATION.
type ConcatenationOptions struct {
	Axis       int32
	Activation Activation
}

// AddOptions configures ADD. PotScaleInt16 defaults to true.
type AddOptions struct {
	Activation    Activation
	PotScaleInt16 bool
}

// MulOptions configures MUL.
type MulOptions struct{ Activation Activation }

// SubOptions configures SUB. PotScaleInt16 defaults to true.
type SubOptions struct {
	Activation    Activation
	PotScaleInt16 bool
}

// ReshapeOptions configures RESHAPE; the shape may instead come from input 1.
type ReshapeOptions struct{ NewShape []int32 }

// ReducerOptions configures MEAN (and other reductions); the axes come from input 1.
type ReducerOptions struct{ KeepDims bool }

// SqueezeOptions configures SQUEEZE.
type SqueezeOptions struct{ SqueezeDims []int32 }

// LeakyReluOptions configures LEAKY_RELU.
type LeakyReluOptions struct{ Alpha float32 }

// Options tables without fields; their presence in a file is preserved.
type (
	PadOptions        struct{}
	PadV2Options      struct{}
	TransposeOptions  struct{}
	DequantizeOptions struct{}
	QuantizeOptions   struct{}
	HardSwishOptions  struct{}
)

// BuiltinOptions union tags (schema numbering).
const (
	tagConv2D          = 1
	tagDepthwiseConv2D = 2
	tagPool2D          = 5
	tagFullyConnected  = 8
	tagSoftmax         = 9
	tagConcatenation   = 10
	tagAdd             = 11
	tagReshape         = 17
	tagMul             = 21
	tagPad             = 22
	tagTranspose       = 26
	tagReducer         = 27
	tagSub             = 28
	tagSqueeze         = 30
	tagDequantize      = 38
	tagPadV2           = 43
	tagLeakyRelu       = 75
	tagQuantize        = 89
	tagHardSwish       = 91
)

func (*Conv2DOptions) OptionsType() uint8          { return tagConv2D }
func (*DepthwiseConv2DOptions) OptionsType() uint8 { return tagDepthwiseConv2D }
func (*Pool2DOptions) OptionsType() uint8          { return tagPool2D }
func (*FullyConnectedOptions) OptionsType() uint8  { return tagFullyConnected }
func (*SoftmaxOptions) OptionsType() uint8         { return tagSoftmax }
func (*ConcatenationOptions) OptionsType() uint8   { return tagConcatenation }
func (*AddOptions) OptionsType() uint8             { return tagAdd }
func (*ReshapeOptions) OptionsType() uint8         { return tagReshape }
func (*MulOptions) OptionsType() uint8             { return tagMul }
func (*PadOptions) OptionsType() uint8             { return tagPad }
func (*TransposeOptions) OptionsType() uint8       { return tagTranspose }
func (*ReducerOptions) OptionsType() uint8         { return tagReducer }
func (*SubOptions) OptionsType() uint8             { return tagSub }
func (*SqueezeOptions) OptionsType() uint8         { return tagSqueeze }
func (*DequantizeOptions) OptionsType() uint8      { return tagDequantize }
func (*PadV2Options) OptionsType() uint8           { return tagPadV2 }
func (*LeakyReluOptions) OptionsType() uint8       { return tagLeakyRelu }
func (*QuantizeOptions) OptionsType() uint8        { return tagQuantize }
func (*HardSwishOptions) OptionsType() uint8       { return tagHardSwish }
