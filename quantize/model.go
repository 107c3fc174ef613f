package quantize

import (
	"bufio"
	"encoding/gob"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"

	"github.com/cxr-edge/cxr-edge/edge/imaging"
)

// Block is one stage of the network. Every block is followed by batch norm and ReLU, which
// the exporter folds into the convolution (bias) and its fused activation, so each block is one
// TFLite op (two for "dwsep").
type Block struct {
	// Kind is "conv" (k×k CONV_2D) or "dwsep" (3×3 DEPTHWISE_CONV_2D + 1×1 CONV_2D, each with
	// batch norm and ReLU).
	Kind   string
	Out    int // output channels
	Kernel int // conv kernel size (default 3)
	Stride int // 1 or 2
}

// Arch describes the network: Blocks on a Size×Size×1 input, then global average pooling
// (MEAN), dropout (training only) and one logit (FULLY_CONNECTED + LOGISTIC).
type Arch struct {
	Size    int
	Blocks  []Block
	Dropout float32
	// Window is the grey-level window of the input (imaging.InputSpec.Window; 0 = none). It is
	// part of the model: the exporter writes it into the model's metadata for the device.
	Window float32
	// Equalize: the input is histogram-equalized after the window (imaging.InputSpec.Equalize),
	// written into the metadata like Window. Training equalizes each augmented film again, as
	// the device would equalize that film.
	Equalize bool
}

// Input is the spec of the model's input tensor: imaging.ModelInput(Size) with the window and
// equalization.
func (a Arch) Input() imaging.InputSpec {
	in := imaging.ModelInput(a.Size)
	in.Window, in.Equalize = a.Window, a.Equalize
	return in
}

// DefaultArch is the pneumonia model: seven 3×3 convolutions, channels doubling at each of
// the four strided ones and a stride-1 convolution at 16², 8² (for size 128: ≈ 10 M MACs,
// 145 k parameters ≈ 150 KB in int8).
func DefaultArch(size int) Arch {
	return Arch{Size: size, Dropout: 0.3, Blocks: []Block{
		{Kind: "conv", Out: 8, Kernel: 3, Stride: 2},
		{Kind: "conv", Out: 16, Kernel: 3, Stride: 2},
		{Kind: "conv", Out: 32, Kernel: 3, Stride: 2},
		{Kind: "conv", Out: 32, Kernel: 3, Stride: 1},
		{Kind: "conv", Out: 64, Kernel: 3, Stride: 2},
		{Kind: "conv", Out: 64, Kernel: 3, Stride: 1},
		{Kind: "conv", Out: 128, Kernel: 3, Stride: 2},
	}}
}

// WithChannels returns a copy of a whose blocks have the given output channels, one per block
// in order (kinds, kernels and strides kept): a wider stem, say, without a new architecture.
func (a Arch) WithChannels(channels []int) (Arch, error) {
	if len(channels) != len(a.Blocks) {
		return a, fmt.Errorf("quantize: %d channel counts for %d blocks", len(channels), len(a.Blocks))
	}
	a.Blocks = slices.Clone(a.Blocks)
	for i, c := range channels {
		if c < 1 || c > 1024 {
			return a, fmt.Errorf("quantize: block %d: %d channels (want 1..1024)", i, c)
		}
		a.Blocks[i].Out = c
	}
	return a, nil
}

// WideArch is a larger alternative (≈ 34 M MACs at 128) kept for comparison.
func WideArch(size int) Arch {
	return Arch{Size: size, Dropout: 0.3, Blocks: []Block{
		{Kind: "conv", Out: 16, Kernel: 3, Stride: 2},
		{Kind: "conv", Out: 32, Kernel: 3, Stride: 2},
		{Kind: "conv", Out: 32, Kernel: 3, Stride: 1},
		{Kind: "conv", Out: 64, Kernel: 3, Stride: 2},
		{Kind: "conv", Out: 64, Kernel: 3, Stride: 1},
		{Kind: "conv", Out: 128, Kernel: 3, Stride: 2},
	}}
}

// Validate reports whether the architecture can be built.
func (a Arch) Validate() error {
	if a.Size < 8 || a.Size > 1024 {
		return fmt.Errorf("quantize: input size %d out of range 8..1024", a.Size)
	}
	if len(a.Blocks) == 0 {
		return errors.New("quantize: architecture has no blocks")
	}
	for i, b := range a.Blocks {
		if b.Kind != "conv" && b.Kind != "dwsep" {
			return fmt.Errorf("quantize: block %d: unknown kind %q", i, b.Kind)
		}
		if b.Out <= 0 || (b.Stride != 1 && b.Stride != 2) || (b.Kind == "conv" && (b.Kernel < 1 || b.Kernel > 7)) {
			return fmt.Errorf("quantize: block %d: bad shape %+v", i, b)
		}
	}
	if err := a.Input().Validate(); err != nil {
		return fmt.Errorf("quantize: %w", err)
	}
	if a.Dropout < 0 || a.Dropout >= 1 {
		return fmt.Errorf("quantize: dropout %v out of [0,1)", a.Dropout)
	}
	return nil
}

// Cost returns the multiply-accumulates of one forward pass and the number of weights after
// batch norm folding (what the int8 model stores).
func (a Arch) Cost() (macs, params int64) {
	h, c := a.Size, 1
	for _, b := range a.Blocks {
		oh := (h + b.Stride - 1) / b.Stride
		switch b.Kind {
		case "conv":
			macs += int64(oh * oh * b.Out * c * b.Kernel * b.Kernel)
			params += int64(b.Out*c*b.Kernel*b.Kernel + b.Out)
		case "dwsep":
			macs += int64(oh*oh*c*9) + int64(oh*oh*c*b.Out)
			params += int64(c*9+c) + int64(c*b.Out+b.Out)
		}
		h, c = oh, b.Out
	}
	macs += int64(h*h*c) + int64(c)
	params += int64(c + 1)
	return macs, params
}

// network is one replica of the layers of an Arch.
type network struct {
	layers []layer
	drop   *dropout
}

// build creates the network with fresh weights drawn from rng.
func build(a Arch, rng *rand.Rand) *network {
	var ls []layer
	c := 1
	for i, b := range a.Blocks {
		name := fmt.Sprintf("b%d", i)
		switch b.Kind {
		case "conv":
			conv := newConv2d(name+".conv", c, b.Out, b.Kernel, b.Stride, rng)
			conv.noInputGrad = i == 0
			ls = append(ls, conv, newBatchNorm(name+".bn", b.Out), &relu{})
		case "dwsep":
			ls = append(ls, newDepthwise(name+".dw", c, 3, b.Stride, rng), newBatchNorm(name+".dwbn", c), &relu{},
				newConv2d(name+".pw", c, b.Out, 1, 1, rng), newBatchNorm(name+".pwbn", b.Out), &relu{})
		}
		c = b.Out
	}
	drop := &dropout{rate: a.Dropout}
	ls = append(ls, &globalAvg{}, drop, newDense("head", c, 1, rng))
	return &network{layers: ls, drop: drop}
}

func (n *network) replica() *network {
	r := &network{}
	for _, l := range n.layers {
		rl := l.replica()
		if d, ok := rl.(*dropout); ok {
			r.drop = d
		}
		r.layers = append(r.layers, rl)
	}
	return r
}

func (n *network) params() []*param {
	var ps []*param
	for _, l := range n.layers {
		ps = append(ps, l.params()...)
	}
	return ps
}

func (n *network) forward(x *tensor, train bool) *tensor {
	for _, l := range n.layers {
		x = l.forward(x, train)
	}
	return x
}

func (n *network) backward(dy *tensor) {
	for i := len(n.layers) - 1; i >= 0; i-- {
		dy = n.layers[i].backward(dy)
	}
}

// Model is a trained float model: its architecture, its weights by name (b<i>.conv.w in
// [out][in][k][k], b<i>.bn.{gamma,beta,mean,var}, head.w [1][c], head.b) and the operating
// point chosen on validation. It is what the quantize/export step reads.
type Model struct {
	Arch   Arch
	Params map[string][]float32
	// Threshold on the sigmoid output giving validation sensitivity ≥ 0.95 (the bar).
	Threshold float32
	// Validation metrics of this model, for the model card.
	Val Metrics
	// Epoch at which these weights were the best on validation (1-based).
	Epoch int
}

const modelMagic = "cxr-edge float model v1\n"

// ErrModelFormat: a model or checkpoint file that is not one, or of another version.
var ErrModelFormat = errors.New("quantize: not a cxr-edge float model")

func (m *Model) network() (*network, error) {
	if err := m.Arch.Validate(); err != nil {
		return nil, err
	}
	net := build(m.Arch, rand.New(rand.NewPCG(0, 0)))
	for _, p := range net.params() {
		v, ok := m.Params[p.name]
		if !ok || len(v) != len(p.w) {
			return nil, fmt.Errorf("%w: parameter %s missing or of length %d, want %d", ErrModelFormat, p.name, len(v), len(p.w))
		}
		copy(p.w, v)
	}
	return net, nil
}

func snapshot(net *network) map[string][]float32 {
	m := make(map[string][]float32)
	for _, p := range net.params() {
		m[p.name] = append([]float32(nil), p.w...)
	}
	return m
}

// Predictor scores preprocessed images with a float model; one per goroutine.
type Predictor struct {
	net  *network
	size int
}

// NewPredictor prepares m for inference.
func (m *Model) NewPredictor() (*Predictor, error) {
	net, err := m.network()
	if err != nil {
		return nil, err
	}
	return &Predictor{net: net, size: m.Arch.Size}, nil
}

// Predict returns the pneumonia probability of each grey image (Size×Size bytes, the output of
// imaging.Plane).
func (p *Predictor) Predict(grey [][]uint8) ([]float32, error) {
	z, err := p.Logits(grey)
	for i, v := range z {
		z[i] = sigmoid(v)
	}
	return z, err
}

// Logits returns the network's logit (before the sigmoid) of each grey image.
func (p *Predictor) Logits(grey [][]uint8) ([]float32, error) {
	hw := p.size * p.size
	x := newTensor(len(grey), 1, p.size, p.size)
	for i, g := range grey {
		if len(g) != hw {
			return nil, fmt.Errorf("quantize: image %d has %d pixels, model wants %d", i, len(g), hw)
		}
		for j, v := range g {
			x.d[i*hw+j] = float32(v) / 255
		}
	}
	z := p.net.forward(x, false)
	return append([]float32(nil), z.d[:len(grey)]...), nil
}

// EnsembleScores returns, for each grey image, the sigmoid of the mean logit of the models
// (what ExportEnsemble's int8 model computes, in float).
func EnsembleScores(models []*Model, grey [][]uint8) ([]float32, error) {
	sum := make([]float32, len(grey))
	for _, m := range models {
		p, err := m.NewPredictor()
		if err != nil {
			return nil, err
		}
		z, err := p.Logits(grey)
		if err != nil {
			return nil, err
		}
		for i, v := range z {
			sum[i] += v
		}
	}
	for i, v := range sum {
		sum[i] = sigmoid(v / float32(len(models)))
	}
	return sum, nil
}

// writeGob writes magic + gob(v) to path atomically (temporary file, fsync, rename), so a crash
// never leaves a half-written checkpoint.
func writeGob(path string, v any) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	w := bufio.NewWriter(tmp)
	if _, err := io.WriteString(w, modelMagic); err != nil {
		tmp.Close()
		return err
	}
	if err := gob.NewEncoder(w).Encode(v); err != nil {
		tmp.Close()
		return fmt.Errorf("encoding %s: %w", path, err)
	}
	if err := w.Flush(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

func readGob(path string, v any) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	r := bufio.NewReader(f)
	head := make([]byte, len(modelMagic))
	if _, err := io.ReadFull(r, head); err != nil || string(head) != modelMagic {
		return fmt.Errorf("%w: %s", ErrModelFormat, path)
	}
	if err := gob.NewDecoder(r).Decode(v); err != nil {
		return fmt.Errorf("%w: %s: %w", ErrModelFormat, path, err)
	}
	return nil
}

// SaveModel writes m to path (atomically).
func SaveModel(path string, m *Model) error { return writeGob(path, m) }

// LoadModel reads a model written by SaveModel and checks it against its architecture.
func LoadModel(path string) (*Model, error) {
	var m Model
	if err := readGob(path, &m); err != nil {
		return nil, err
	}
	if _, err := m.network(); err != nil {
		return nil, err
	}
	return &m, nil
}
