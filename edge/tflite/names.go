package tflite

import "strconv"

// builtinNames is the BuiltinOperator enum's names, indexed by value (read-only).
var builtinNames = [...]string{
	"ADD",
	"AVERAGE_POOL_2D",
	"CONCATENATION",
	"CONV_2D",
	"DEPTHWISE_CONV_2D",
	"DEPTH_TO_SPACE",
	"DEQUANTIZE",
	"EMBEDDING_LOOKUP",
	"FLOOR",
	"FULLY_CONNECTED",
	"HASHTABLE_LOOKUP",
	"L2_NORMALIZATION",
	"L2_POOL_2D",
	"LOCAL_RESPONSE_NORMALIZATION",
	"LOGISTIC",
	"LSH_PROJECTION",
	"LSTM",
	"MAX_POOL_2D",
	"MUL",
	"RELU",
	"RELU_N1_TO_1",
	"RELU6",
	"RESHAPE",
	"RESIZE_BILINEAR",
	"RNN",
	"SOFTMAX",
	"SPACE_TO_DEPTH",
	"SVDF",
	"TANH",
	"CONCAT_EMBEDDINGS",
	"SKIP_GRAM",
	"CALL",
	"CUSTOM",
	"EMBEDDING_LOOKUP_SPARSE",
	"PAD",
	"UNIDIRECTIONAL_SEQUENCE_RNN",
	"GATHER",
	"BATCH_TO_SPACE_ND",
	"SPACE_TO_BATCH_ND",
	"TRANSPOSE",
	"MEAN",
	"SUB",
	"DIV",
	"SQUEEZE",
	"UNIDIRECTIONAL_SEQUENCE_LSTM",
	"STRIDED_SLICE",
	"BIDIRECTIONAL_SEQUENCE_RNN",
	"EXP",
	"TOPK_V2",
	"SPLIT",
	"LOG_SOFTMAX",
	"DELEGATE",
	"BIDIRECTIONAL_SEQUENCE_LSTM",
	"CAST",
	"PRELU",
	"MAXIMUM",
	"ARG_MAX",
	"MINIMUM",
	"LESS",
	"NEG",
	"PADV2",
	"GREATER",
	"GREATER_EQUAL",
	"LESS_EQUAL",
	"SELECT",
	"SLICE",
	"SIN",
	"TRANSPOSE_CONV",
	"SPARSE_TO_DENSE",
	"TILE",
	"EXPAND_DIMS",
	"EQUAL",
	"NOT_EQUAL",
	"LOG",
	"SUM",
	"SQRT",
	"RSQRT",
	"SHAPE",
	"POW",
	"ARG_MIN",
	"FAKE_QUANT",
	"REDUCE_PROD",
	"REDUCE_MAX",
	"PACK",
	"LOGICAL_OR",
	"ONE_HOT",
	"LOGICAL_AND",
	"LOGICAL_NOT",
	"UNPACK",
	"REDUCE_MIN",
	"FLOOR_DIV",
	"REDUCE_ANY",
	"SQUARE",
	"ZEROS_LIKE",
	"FILL",
	"FLOOR_MOD",
	"RANGE",
	"RESIZE_NEAREST_NEIGHBOR",
	"LEAKY_RELU",
	"SQUARED_DIFFERENCE",
	"MIRROR_PAD",
	"ABS",
	"SPLIT_V",
	"UNIQUE",
	"CEIL",
	"REVERSE_V2",
	"ADD_N",
	"GATHER_ND",
	"COS",
	"WHERE",
	"RANK",
	"ELU",
	"REVERSE_SEQUENCE",
	"MATRIX_DIAG",
	"QUANTIZE",
	"MATRIX_SET_DIAG",
	"ROUND",
	"HARD_SWISH",
	"IF",
	"WHILE",
	"NON_MAX_SUPPRESSION_V4",
	"NON_MAX_SUPPRESSION_V5",
	"SCATTER_ND",
	"SELECT_V2",
	"DENSIFY",
	"SEGMENT_SUM",
	"BATCH_MATMUL",
	"PLACEHOLDER_FOR_GREATER_OP_CODES",
	"CUMSUM",
	"CALL_ONCE",
	"BROADCAST_TO",
	"RFFT2D",
	"CONV_3D",
	"IMAG",
	"REAL",
	"COMPLEX_ABS",
	"HASHTABLE",
	"HASHTABLE_FIND",
	"HASHTABLE_IMPORT",
	"HASHTABLE_SIZE",
	"REDUCE_ALL",
	"CONV_3D_TRANSPOSE",
	"VAR_HANDLE",
	"READ_VARIABLE",
	"ASSIGN_VARIABLE",
	"BROADCAST_ARGS",
	"RANDOM_STANDARD_NORMAL",
	"BUCKETIZE",
	"RANDOM_UNIFORM",
	"MULTINOMIAL",
	"GELU",
	"DYNAMIC_UPDATE_SLICE",
	"RELU_0_TO_1",
	"UNSORTED_SEGMENT_PROD",
	"UNSORTED_SEGMENT_MAX",
	"UNSORTED_SEGMENT_SUM",
	"ATAN2",
	"UNSORTED_SEGMENT_MIN",
	"SIGN",
	"BITCAST",
	"BITWISE_XOR",
	"RIGHT_SHIFT",
	"STABLEHLO_LOGISTIC",
	"STABLEHLO_ADD",
	"STABLEHLO_DIVIDE",
	"STABLEHLO_MULTIPLY",
	"STABLEHLO_MAXIMUM",
	"STABLEHLO_RESHAPE",
	"STABLEHLO_CLAMP",
	"STABLEHLO_CONCATENATE",
	"STABLEHLO_BROADCAST_IN_DIM",
	"STABLEHLO_CONVOLUTION",
	"STABLEHLO_SLICE",
	"STABLEHLO_CUSTOM_CALL",
	"STABLEHLO_REDUCE",
	"STABLEHLO_ABS",
	"STABLEHLO_AND",
	"STABLEHLO_COSINE",
	"STABLEHLO_EXPONENTIAL",
	"STABLEHLO_FLOOR",
	"STABLEHLO_LOG",
	"STABLEHLO_MINIMUM",
	"STABLEHLO_NEGATE",
	"STABLEHLO_OR",
	"STABLEHLO_POWER",
	"STABLEHLO_REMAINDER",
	"STABLEHLO_RSQRT",
	"STABLEHLO_SELECT",
	"STABLEHLO_SUBTRACT",
	"STABLEHLO_TANH",
	"STABLEHLO_SCATTER",
	"STABLEHLO_COMPARE",
	"STABLEHLO_CONVERT",
	"STABLEHLO_DYNAMIC_SLICE",
	"STABLEHLO_DYNAMIC_UPDATE_SLICE",
	"STABLEHLO_PAD",
	"STABLEHLO_IOTA",
	"STABLEHLO_DOT_GENERAL",
	"STABLEHLO_REDUCE_WINDOW",
	"STABLEHLO_SORT",
	"STABLEHLO_WHILE",
	"STABLEHLO_GATHER",
	"STABLEHLO_TRANSPOSE",
	"DILATE",
	"STABLEHLO_RNG_BIT_GENERATOR",
	"REDUCE_WINDOW",
	"STABLEHLO_COMPOSITE",
	"STABLEHLO_SHIFT_LEFT",
	"STABLEHLO_CBRT",
	"STABLEHLO_CASE",
}

// String returns the schema name of the operator, e.g. "CONV_2D", or "BUILTIN_n" for a
// number this package does not know.
func (op BuiltinOp) String() string {
	if op >= 0 && int(op) < len(builtinNames) {
		return builtinNames[op]
	}
	return "BUILTIN_" + strconv.Itoa(int(op))
}

// tensorTypeNames is the TensorType enum's names in lower case, indexed by value (read-only).
var tensorTypeNames = [...]string{
	"float32", "float16", "int32", "uint8", "int64", "string", "bool", "int16", "complex64",
	"int8", "float64", "complex128", "uint64", "resource", "variant", "uint32", "uint16", "int4",
	"bfloat16", "int2", "uint4", "float8_e4m3fn", "float8_e5m2",
}

// tensorTypeSizes is the element size in bytes per TensorType; 0 for types whose elements
// are not a fixed whole number of bytes (string, resource, variant, packed 4- and 2-bit).
var tensorTypeSizes = [...]uint8{4, 2, 4, 1, 8, 0, 1, 2, 8, 1, 8, 16, 8, 0, 0, 4, 2, 0, 2, 0, 0, 1, 1}

// Known reports whether t is a TensorType of the schema this package was written against.
func (t TensorType) Known() bool { return t >= 0 && int(t) < len(tensorTypeNames) }

// String returns the type's name as LiteRT's runners print it, e.g. "int8", "float32".
func (t TensorType) String() string {
	if t.Known() {
		return tensorTypeNames[t]
	}
	return "type" + strconv.Itoa(int(t))
}

// Size returns the size of one element in bytes, or 0 when elements have no fixed byte
// size (string, resource, variant, int4, uint4, int2) or t is unknown.
func (t TensorType) Size() int {
	if t.Known() {
		return int(tensorTypeSizes[t])
	}
	return 0
}

// String returns the activation's schema name, e.g. "RELU6".
func (a Activation) String() string {
	switch a {
	case ActNone:
		return "NONE"
	case ActRelu:
		return "RELU"
	case ActReluN1To1:
		return "RELU_N1_TO_1"
	case ActRelu6:
		return "RELU6"
	case ActTanh:
		return "TANH"
	case ActSignBit:
		return "SIGN_BIT"
	}
	return "ACTIVATION_" + strconv.Itoa(int(a))
}

// String returns "SAME" or "VALID".
func (p Padding) String() string {
	switch p {
	case PaddingSame:
		return "SAME"
	case PaddingValid:
		return "VALID"
	}
	return "PADDING_" + strconv.Itoa(int(p))
}
