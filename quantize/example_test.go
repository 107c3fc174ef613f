package quantize_test

import (
	"fmt"

	"github.com/cxr-edge/cxr-edge/quantize"
)

// Validation metrics and the operating threshold, as the trainer computes them each epoch.
func ExampleEvaluate() {
	scores := []float32{0.05, 0.20, 0.35, 0.40, 0.55, 0.70, 0.80, 0.90, 0.95, 0.99}
	labels := []uint8{0, 0, 1, 0, 1, 1, 1, 1, 1, 1} // 1 = pneumonia
	th := quantize.ThresholdForSensitivity(scores, labels, quantize.SensitivityTarget)
	fmt.Println(quantize.Evaluate(scores, labels, th))
	// Output: AUC 0.9524 acc 90.00% sens 100.00% spec 66.67% @0.350 (n=10, 7 pos)
}

// The unit of the train/validation split is the patient named in the file.
func ExamplePatientID() {
	for _, f := range []string{"person1000_bacteria_2931.jpeg", "IM-0115-0001.jpeg", "NORMAL2-IM-1427-0001.jpeg"} {
		id, _ := quantize.PatientID(f)
		fmt.Println(id)
	}
	// Output:
	// person1000
	// IM-0115
	// NORMAL2-IM-1427
}

// The architecture of the shipped model and its cost.
func ExampleArch_Cost() {
	macs, params := quantize.DefaultArch(128).Cost()
	fmt.Printf("%.1f M MACs, %d parameters\n", float64(macs)/1e6, params)
	// Output: 9.7 M MACs, 144545 parameters
}

// Test-set metrics with 95% bootstrap intervals and the confusion matrix, as cxr-quantize eval
// reports them.
func ExampleBootstrap() {
	scores := []float32{0.05, 0.20, 0.35, 0.40, 0.55, 0.70, 0.80, 0.90, 0.95, 0.99}
	labels := []uint8{0, 0, 1, 0, 1, 1, 1, 1, 1, 1}
	ci := quantize.Bootstrap(scores, labels, 0.5, 1000, 1)
	fmt.Printf("accuracy %.0f%%, sensitivity %.0f%%\n", 100*ci.Accuracy.Value, 100*ci.Sensitivity.Value)
	fmt.Println(ci.Accuracy.Lo <= ci.Accuracy.Value && ci.Accuracy.Value <= ci.Accuracy.Hi)
	fmt.Printf("%+v\n", quantize.Count(scores, labels, 0.5))
	// Output:
	// accuracy 90%, sensitivity 86%
	// true
	// {TP:6 FN:1 TN:3 FP:0}
}

// Two models' calls on the same images: the int8 model against its float original.
func ExampleAgree() {
	int8Scores := []float32{0.10, 0.45, 0.62, 0.90}
	floatScores := []float32{0.12, 0.52, 0.60, 0.93}
	g := quantize.Agree(int8Scores, floatScores, 0.5, 0.5)
	fmt.Printf("same call %.0f%%, %d differ, kappa %.2f\n", 100*g.SameCall, g.Disagree, g.Kappa)
	// Output: same call 75%, 1 differ, kappa 0.50
}
