package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"unicode"

	"github.com/cxr-edge/cxr-edge/edge/engine"
	"github.com/cxr-edge/cxr-edge/edge/tflite"
)

// cmdInspect prints a model's graph: `cxr-quantize inspect MODEL`.
func cmdInspect(args []string) error {
	fs := flag.NewFlagSet("inspect", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: inspect: %v", errUsage, err)
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("%w: inspect takes one MODEL argument, got %d", errUsage, fs.NArg())
	}
	return inspectFile(os.Stdout, fs.Arg(0))
}

func inspectFile(w io.Writer, path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	m, err := tflite.Read(data)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	// The arena size is the engine's plan; a model the engine refuses has none.
	var arena string
	if em, err := engine.Load(m, engine.Options{Threads: 1}); err != nil {
		arena = "- (the engine refuses the model: " + err.Error() + ")"
	} else {
		arena = fmt.Sprintf("%s bytes per interpreter", thousands(int64(em.ArenaBytes())))
	}
	return inspectModel(w, filepath.Base(path), len(data), m, arena)
}

// modelStats totals a subgraph's constant elements and multiply-accumulates.
type modelStats struct {
	Params, ParamBytes int64
	MACs               int64
	MACsByOp           map[tflite.BuiltinOp]int64
}

// statsOf computes the totals of subgraph 0 from tensor shapes alone.
func statsOf(m *tflite.Model) modelStats {
	s := modelStats{MACsByOp: map[tflite.BuiltinOp]int64{}}
	sg := &m.Subgraphs[0]
	for i := range sg.Tensors {
		t := &sg.Tensors[i]
		if d := m.BufferData(t); d != nil {
			s.Params += int64(t.NumElements())
			s.ParamBytes += int64(len(d))
		}
	}
	for i := range sg.Operators {
		op := &sg.Operators[i]
		oc, err := m.OpCode(op)
		if err != nil {
			continue
		}
		if macs := opMACs(sg, op, oc.Builtin); macs > 0 {
			s.MACs += macs
			s.MACsByOp[oc.Builtin] += macs
		}
	}
	return s
}

// opMACs counts one operator's multiply-accumulates:
//   - CONV_2D: output elements × filter height × width × input channels (filter [O,H,W,I]);
//   - DEPTHWISE_CONV_2D: output elements × filter height × width (one input channel each);
//   - FULLY_CONNECTED: output elements × input size (weights [O,I]).
//
// Other operators count 0.
func opMACs(sg *tflite.Subgraph, op *tflite.Operator, code tflite.BuiltinOp) int64 {
	if len(op.Inputs) < 2 || len(op.Outputs) < 1 || op.Inputs[1] < 0 {
		return 0
	}
	w := sg.Tensors[op.Inputs[1]].Shape
	out := int64(sg.Tensors[op.Outputs[0]].NumElements())
	switch {
	case code == tflite.OpConv2D && len(w) == 4:
		return out * int64(w[1]) * int64(w[2]) * int64(w[3])
	case code == tflite.OpDepthwiseConv2D && len(w) == 4:
		return out * int64(w[1]) * int64(w[2])
	case code == tflite.OpFullyConnected && len(w) == 2:
		return out * int64(w[1])
	}
	return 0
}

func inspectModel(w io.Writer, name string, size int, m *tflite.Model, arena string) error {
	sg := &m.Subgraphs[0]
	fmt.Fprintf(w, "model %s: %s bytes, schema %d", name, thousands(int64(size)), m.Version)
	if m.Description != "" {
		fmt.Fprintf(w, ", %q", m.Description)
	}
	fmt.Fprintln(w)
	if len(m.Subgraphs) > 1 {
		fmt.Fprintf(w, "%d subgraphs; showing subgraph 0, the one that runs\n", len(m.Subgraphs))
	}
	fmt.Fprintf(w, "subgraph 0 %q: %d operators, %d tensors, inputs %v, outputs %v\n",
		sg.Name, len(sg.Operators), len(sg.Tensors), sg.Inputs, sg.Outputs)
	for _, md := range m.Metadata {
		d, _ := m.MetadataByName(md.Name)
		fmt.Fprintf(w, "metadata %q: %d bytes\n", md.Name, len(d))
	}

	fmt.Fprintln(w, "\noperators")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  #\top\tversion\tinputs -> outputs\toptions")
	for i := range sg.Operators {
		op := &sg.Operators[i]
		oc, err := m.OpCode(op)
		if err != nil {
			return err
		}
		name := oc.Builtin.String()
		if oc.CustomCode != "" {
			name += " " + strconv.Quote(oc.CustomCode)
		}
		fmt.Fprintf(tw, "  %d\t%s\t%d\t%v -> %v\t%s\n", i, name, oc.Version, op.Inputs, op.Outputs, describeOptions(op.Options))
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	fmt.Fprintln(w, "\ntensors")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  #\tname\ttype\tshape\tquantization\tdata")
	for i := range sg.Tensors {
		t := &sg.Tensors[i]
		shape := fmt.Sprint(t.Shape)
		if t.ShapeSignature != nil {
			shape += " sig " + fmt.Sprint(t.ShapeSignature)
		}
		data := "-"
		if d := m.BufferData(t); d != nil {
			data = "constant " + thousands(int64(len(d))) + " B"
		} else if t.IsVariable {
			data = "variable"
		}
		fmt.Fprintf(tw, "  %d\t%s\t%s\t%s\t%s\t%s\n", i, shorten(t.Name, 60), t.Type, shape, describeQuant(t.Quantization), data)
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	s := statsOf(m)
	fmt.Fprintf(w, "\nparameters: %s (elements of constant tensors, %s bytes)\n", thousands(s.Params), thousands(s.ParamBytes))
	var parts []string
	for _, op := range []tflite.BuiltinOp{tflite.OpConv2D, tflite.OpDepthwiseConv2D, tflite.OpFullyConnected} {
		if n := s.MACsByOp[op]; n > 0 {
			parts = append(parts, op.String()+" "+thousands(n))
		}
	}
	fmt.Fprintf(w, "MACs: %s", thousands(s.MACs))
	if len(parts) > 0 {
		fmt.Fprintf(w, " (%s)", strings.Join(parts, ", "))
	}
	fmt.Fprintln(w)
	_, err := fmt.Fprintf(w, "arena: %s\n", arena)
	return err
}

// shorten keeps long names (converters write whole layer paths) readable in a table: the
// start and the end, which names the layer. Control characters (a tab or newline would
// break the table, an escape sequence would reach the terminal) print as U+FFFD.
func shorten(s string, n int) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return unicode.ReplacementChar
		}
		return r
	}, s)
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	head := n / 3
	return string(r[:head]) + "…" + string(r[len(r)-(n-head-1):])
}

// describeQuant prints per-tensor parameters, or the channel count and axis.
func describeQuant(q *tflite.Quantization) string {
	switch {
	case q == nil || len(q.Scale) == 0:
		return "-"
	case len(q.Scale) == 1:
		return fmt.Sprintf("scale %.6g zp %d", q.Scale[0], q.ZeroPoint[0])
	default:
		return fmt.Sprintf("per-channel: %d scales on dim %d", len(q.Scale), q.QuantizedDimension)
	}
}

// describeOptions summarises the options that change what an operator computes.
func describeOptions(o tflite.Options) string {
	act := func(a tflite.Activation) string {
		if a == tflite.ActNone {
			return ""
		}
		return " " + a.String()
	}
	dil := func(w, h int32) string {
		if w == 1 && h == 1 {
			return ""
		}
		return fmt.Sprintf(" dilation %dx%d", w, h)
	}
	switch o := o.(type) {
	case nil:
		return ""
	case *tflite.Conv2DOptions:
		return fmt.Sprintf("%s stride %dx%d%s%s", o.Padding, o.StrideW, o.StrideH, dil(o.DilationW, o.DilationH), act(o.Activation))
	case *tflite.DepthwiseConv2DOptions:
		return fmt.Sprintf("%s stride %dx%d multiplier %d%s%s", o.Padding, o.StrideW, o.StrideH, o.DepthMultiplier, dil(o.DilationW, o.DilationH), act(o.Activation))
	case *tflite.Pool2DOptions:
		return fmt.Sprintf("%s filter %dx%d stride %dx%d%s", o.Padding, o.FilterW, o.FilterH, o.StrideW, o.StrideH, act(o.Activation))
	case *tflite.FullyConnectedOptions:
		s := strings.TrimSpace(act(o.Activation))
		if o.KeepNumDims {
			s += " keep_num_dims"
		}
		return strings.TrimSpace(s)
	case *tflite.SoftmaxOptions:
		return fmt.Sprintf("beta %g", o.Beta)
	case *tflite.ConcatenationOptions:
		return fmt.Sprintf("axis %d%s", o.Axis, act(o.Activation))
	case *tflite.AddOptions:
		return strings.TrimSpace(act(o.Activation))
	case *tflite.SubOptions:
		return strings.TrimSpace(act(o.Activation))
	case *tflite.MulOptions:
		return strings.TrimSpace(act(o.Activation))
	case *tflite.ReshapeOptions:
		return fmt.Sprintf("new_shape %v", o.NewShape)
	case *tflite.ReducerOptions:
		if o.KeepDims {
			return "keep_dims"
		}
		return ""
	case *tflite.SqueezeOptions:
		return fmt.Sprintf("squeeze_dims %v", o.SqueezeDims)
	case *tflite.LeakyReluOptions:
		return fmt.Sprintf("alpha %g", o.Alpha)
	case *tflite.RawOptions:
		return fmt.Sprintf("options type %d, %d fields", o.Type, len(o.Fields))
	}
	return ""
}

// thousands formats n with comma separators: 1234567 → "1,234,567".
func thousands(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}
