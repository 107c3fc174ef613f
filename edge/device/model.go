package device

import (
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/cxr-edge/cxr-edge/edge/engine"
	"github.com/cxr-edge/cxr-edge/edge/imaging"
	"github.com/cxr-edge/cxr-edge/edge/tflite"
	"github.com/cxr-edge/cxr-edge/telemetry"
)

// embeddedFS holds the shipped pneumonia model. It is replaced (same path) when the model
// pipeline produces a better one, so nothing may depend on its exact bytes or scores.
//
//go:embed model/cxr-pneumonia-int8.tflite
var embeddedFS embed.FS

const embeddedModelFile = "model/cxr-pneumonia-int8.tflite"

// EmbeddedModelName names the embedded model in results, status and logs.
const EmbeddedModelName = "cxr-pneumonia-int8 (embedded)"

// EmbeddedModel returns a copy of the model embedded in the binary (model.path empty). The
// embed directive guarantees the file at build time, so an error means a broken build.
func EmbeddedModel() ([]byte, error) {
	b, err := embeddedFS.ReadFile(embeddedModelFile)
	if err != nil {
		return nil, fmt.Errorf("%w %s: %w", ErrModel, EmbeddedModelName, err)
	}
	return b, nil
}

// EmbeddedModelRef identifies the embedded model (name, version from its description,
// sha256) without loading it into the interpreter.
func EmbeddedModelRef() (telemetry.ModelRef, error) {
	data, err := EmbeddedModel()
	if err != nil {
		return telemetry.ModelRef{}, err
	}
	sum := sha256.Sum256(data)
	tm, err := tflite.Read(data)
	if err != nil {
		return telemetry.ModelRef{}, fmt.Errorf("%w %s: %w", ErrModel, EmbeddedModelName, err)
	}
	return telemetry.ModelRef{Name: EmbeddedModelName, Version: modelVersion(tm), SHA256: hex.EncodeToString(sum[:])}, nil
}

// ErrModel wraps every problem with a model file: unreadable, wrong sha256, unsupported shape.
var ErrModel = errors.New("model")

// DefaultThreshold is the operating point of a model whose metadata names none.
const DefaultThreshold = 0.5

// EngineModel scores images with the pure-Go int8 engine. It is safe for concurrent use: each
// call takes an interpreter from a pool (weights are shared).
type EngineModel struct {
	model     *engine.Model
	spec      imaging.InputSpec
	ref       telemetry.ModelRef
	threshold float64 // the model's own operating point
	output    string  // auto, probability, logit
	positive  int
	pool      sync.Pool // *engine.Interpreter
}

// LoadModel reads and checks the configured model (model.path, or the embedded model when
// it is empty): its sha256 against model.sha256, one 4-D image input [1,H,W,C] with C 1 or 3
// of int8, uint8 or float32, and an output of one value or of at least positive_index+1
// classes.
func LoadModel(cfg ModelConfig) (*EngineModel, error) {
	if cfg.Path == "" {
		data, err := EmbeddedModel()
		if err != nil {
			return nil, err
		}
		return LoadModelBytes(data, EmbeddedModelName, cfg)
	}
	data, err := os.ReadFile(cfg.Path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrModel, err)
	}
	name := filepath.Base(cfg.Path)
	// Models kept by a remote reload are named <sha256>-<original name>.
	if len(name) > 65 && name[64] == '-' {
		if telemetry.IsSHA256Hex(name[:64]) {
			name = name[65:]
		}
	}
	return LoadModelBytes(data, name, cfg)
}

// LoadModelBytes is LoadModel for a model already in memory; name is reported in results.
func LoadModelBytes(data []byte, name string, cfg ModelConfig) (*EngineModel, error) {
	sum := sha256.Sum256(data)
	digest := hex.EncodeToString(sum[:])
	if cfg.SHA256 != "" && !strings.EqualFold(cfg.SHA256, digest) {
		return nil, fmt.Errorf("%w %s: sha256 is %s, model.sha256 pins %s", ErrModel, name, digest, cfg.SHA256)
	}
	tm, err := tflite.Read(data)
	if err != nil {
		return nil, fmt.Errorf("%w %s: %w", ErrModel, name, err)
	}
	m, err := engine.Load(tm, engine.Options{Threads: cfg.Threads})
	if err != nil {
		return nil, fmt.Errorf("%w %s: %w", ErrModel, name, err)
	}
	spec, err := imaging.SpecFromModel(tm)
	if err != nil {
		return nil, fmt.Errorf("%w %s: %w", ErrModel, name, err)
	}
	outs := m.Outputs()
	if len(outs) < 1 {
		return nil, fmt.Errorf("%w %s: no output tensor", ErrModel, name)
	}
	switch outs[0].Type {
	case tflite.Int8, tflite.Uint8, tflite.Float32:
	default:
		return nil, fmt.Errorf("%w %s: output type %v, want int8, uint8 or float32", ErrModel, name, outs[0].Type)
	}
	if n := outs[0].NumElements(); n != 1 && n <= cfg.PositiveIndex {
		return nil, fmt.Errorf("%w %s: output has %d classes, model.positive_index is %d", ErrModel, name, n, cfg.PositiveIndex)
	}
	em := &EngineModel{
		model: m, spec: spec, threshold: DefaultThreshold,
		output: cfg.Output, positive: cfg.PositiveIndex,
		ref: telemetry.ModelRef{Name: strings.TrimSuffix(name, ".tflite"), Version: modelVersion(tm), SHA256: digest},
	}
	if em.output == "" {
		em.output = "auto"
	}
	if t, ok, err := imaging.ModelThreshold(tm); err != nil {
		return nil, fmt.Errorf("%w %s: %w", ErrModel, name, err)
	} else if ok {
		em.threshold = t
	}
	em.pool.New = func() any { return m.NewInterpreter() }
	return em, nil
}

// modelVersion is the model's description (cxr-quantize writes what it is and how it was
// trained), cut to one short line for results.
func modelVersion(m *tflite.Model) string {
	v := strings.TrimSpace(strings.SplitN(m.Description, "\n", 2)[0])
	if len(v) > 120 {
		v = v[:120]
	}
	return v
}

// Spec is the input tensor Preprocess must write.
func (m *EngineModel) Spec() imaging.InputSpec { return m.spec }

// Ref identifies the model in results and status.
func (m *EngineModel) Ref() telemetry.ModelRef { return m.ref }

// Threshold is the model's own operating point (metadata, else DefaultThreshold).
func (m *EngineModel) Threshold() float64 { return m.threshold }

// Score runs the model on an input tensor written by imaging.Preprocess for Spec and returns
// the probability of the positive class.
func (m *EngineModel) Score(ctx context.Context, input []byte) (float64, error) {
	ip := m.pool.Get().(*engine.Interpreter)
	defer m.pool.Put(ip)
	dst := ip.Input(0).Bytes()
	if len(dst) != len(input) {
		return 0, fmt.Errorf("%w: input of %d bytes, the model takes %d", ErrModel, len(input), len(dst))
	}
	copy(dst, input)
	if err := ip.Invoke(ctx); err != nil {
		return 0, fmt.Errorf("inference: %w", err)
	}
	return outputScore(ip.Output(0), m.output, m.positive)
}

// outputScore turns the output tensor into the positive class's probability.
func outputScore(t *engine.Tensor, mode string, positive int) (float64, error) {
	info := t.Info()
	vals := make([]float64, info.NumElements())
	switch info.Type {
	case tflite.Float32:
		for i, v := range t.Float32() {
			vals[i] = float64(v)
		}
	case tflite.Int8, tflite.Uint8:
		if len(info.Scale) == 0 {
			return 0, fmt.Errorf("%w: quantized output without scale", ErrModel)
		}
		scale, zp := float64(info.Scale[0]), float64(info.ZeroPoint[0])
		if info.Type == tflite.Int8 {
			for i, v := range t.Int8() {
				vals[i] = (float64(v) - zp) * scale
			}
		} else {
			for i, v := range t.Uint8() {
				vals[i] = (float64(v) - zp) * scale
			}
		}
	}
	return scoreFromValues(vals, mode, positive)
}

// scoreFromValues applies the output rule documented at model.output.
func scoreFromValues(vals []float64, mode string, positive int) (float64, error) {
	if len(vals) == 0 {
		return 0, fmt.Errorf("%w: empty output", ErrModel)
	}
	for _, v := range vals {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return 0, fmt.Errorf("%w: output is not finite", ErrModel)
		}
	}
	if len(vals) == 1 {
		v := vals[0]
		if mode == "logit" || (mode == "auto" && (v < 0 || v > 1)) {
			v = 1 / (1 + math.Exp(-v))
		}
		return clamp01(v), nil
	}
	if positive >= len(vals) {
		return 0, fmt.Errorf("%w: positive class %d of %d outputs", ErrModel, positive, len(vals))
	}
	isProb := true
	sum := 0.0
	for _, v := range vals {
		sum += v
		if v < 0 || v > 1 {
			isProb = false
		}
	}
	// An int8 softmax output (scale 1/256) sums to 1 within a few quantization steps.
	if math.Abs(sum-1) > 0.05 {
		isProb = false
	}
	if mode == "logit" || (mode == "auto" && !isProb) {
		mx := vals[0]
		for _, v := range vals {
			mx = math.Max(mx, v)
		}
		total := 0.0
		for _, v := range vals {
			total += math.Exp(v - mx)
		}
		return clamp01(math.Exp(vals[positive]-mx) / total), nil
	}
	return clamp01(vals[positive]), nil
}

func clamp01(v float64) float64 { return math.Min(1, math.Max(0, v)) }
