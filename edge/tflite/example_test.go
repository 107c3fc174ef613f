package tflite_test

import (
	"errors"
	"fmt"

	"github.com/cxr-edge/cxr-edge/edge/tflite"
)

// softmaxModel is a one-operator int8 model built in memory.
func softmaxModel() *tflite.Model {
	q := func(scale float32, zp int64) *tflite.Quantization {
		return &tflite.Quantization{Scale: []float32{scale}, ZeroPoint: []int64{zp}}
	}
	return &tflite.Model{
		Buffers:       []tflite.Buffer{{}}, // buffers[0]: the empty sentinel
		OperatorCodes: []tflite.OperatorCode{{Builtin: tflite.OpSoftmax, Version: 2}},
		Subgraphs: []tflite.Subgraph{{
			Tensors: []tflite.Tensor{
				{Name: "logits", Type: tflite.Int8, Shape: []int32{1, 2}, Quantization: q(0.1, 0)},
				{Name: "probs", Type: tflite.Int8, Shape: []int32{1, 2}, Quantization: q(1.0/256, -128)},
			},
			Inputs:  []int32{0},
			Outputs: []int32{1},
			Operators: []tflite.Operator{{
				OpcodeIndex: 0, Inputs: []int32{0}, Outputs: []int32{1},
				Options: &tflite.SoftmaxOptions{Beta: 1},
			}},
		}},
	}
}

// Write a model, read it back and walk its graph.
func Example() {
	m := softmaxModel()
	m.SetMetadata("cxr_operating_point", []byte(`{"threshold":0.42}`))
	data, err := tflite.Write(m)
	if err != nil {
		fmt.Println(err)
		return
	}
	back, err := tflite.Read(data) // validates every offset, index and length
	if err != nil {
		fmt.Println(err)
		return
	}
	sg := &back.Subgraphs[0]
	for i := range sg.Operators {
		op := &sg.Operators[i]
		code, _ := back.OpCode(op)
		fmt.Printf("%s v%d %v -> %v %+v\n", code.Builtin, code.Version, op.Inputs, op.Outputs, op.Options)
	}
	for _, t := range sg.Tensors {
		fmt.Printf("%s %s %v scale %g zp %d\n", t.Name, t.Type, t.Shape, t.Quantization.Scale[0], t.Quantization.ZeroPoint[0])
	}
	op, _ := back.MetadataByName("cxr_operating_point")
	fmt.Printf("metadata %s\n", op)
	// Output:
	// SOFTMAX v2 [0] -> [1] &{Beta:1}
	// logits int8 [1 2] scale 0.1 zp 0
	// probs int8 [1 2] scale 0.00390625 zp -128
	// metadata {"threshold":0.42}
}

// Errors name the place in the file and wrap a sentinel error.
func ExampleRead_errors() {
	data, _ := tflite.Write(softmaxModel())
	_, err := tflite.Read(data[:len(data)/2])
	var fe *tflite.FormatError
	fmt.Println(errors.Is(err, tflite.ErrTruncated), errors.As(err, &fe) && fe.Path != "")

	m := softmaxModel()
	m.Subgraphs[0].Operators[0].Inputs[0] = 7
	_, err = tflite.Write(m)
	fmt.Println(err)
	// Output:
	// true true
	// tflite: subgraphs[0].operators[0].inputs[0]: invalid model: tensor index 7 out of range [0,2)
}
