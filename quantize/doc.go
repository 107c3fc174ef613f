// Package quantize is cxr-edge's model pipeline, in pure Go: it reads the chest X-ray dataset,
// trains the float32 pneumonia CNN, and exports it as an int8 TFLite model that the device's
// engine (and Google's runtime) run.
//
// The stages:
//
//   - Data: ListSplit reads the Kaggle layout {train,val,test}/{NORMAL,PNEUMONIA};
//     SplitByPatient holds out 15% of the training patients (stratified, seeded) for
//     validation, the official 16-image val split joins it, and the test split is read only
//     for the final report. Every image goes through imaging.Plane (grey, squashed to the
//     model's size, then the model's grey-level window), the device's own preprocessing, once,
//     and stays in memory as size×size grey bytes.
//   - Training (Train): float32 layers with hand-written backward passes (convolution via
//     im2col + gonum's SGEMM, batch norm, ReLU, pooling, dense, dropout), class-weighted
//     sigmoid cross-entropy, AdamW with warm-up and cosine decay, X-ray augmentation, one
//     network replica per batch shard in parallel, per-epoch checkpoints with bit-identical
//     resume, early stopping on validation AUC.
//   - Export (ExportInt8): batch norm folded into the convolutions, activation ranges
//     calibrated on training images, biases corrected for the mean int8 rounding error
//     (biasCorrected), weights int8 per output channel, the head after the int8
//     global average in float32 (so confident scores keep their order), the operating
//     threshold (validation sensitivity ≥ 0.95, re-chosen on the int8 model's own scores) and
//     the grey-level steps (window, equalization) stored as metadata
//     (imaging.ThresholdMetadata, imaging.WindowMetadata, imaging.EqualizeMetadata), which
//     the device reads with imaging.SpecFromModel.
//   - Ensembles (Ensemble, ExportEnsemble): members trained with different Seeds and one
//     SplitSeed become one int8 model that averages their logits; its threshold is chosen on
//     the shared validation split.
//   - Stress test (RunStress, StressModel, StressSuite): the int8 model on its validation
//     films magnified ×1.0–1.4 (framing), brightened or blurred (exposure) and stretched down
//     or across (aspect), at its own threshold, each perturbed film put through the model's
//     grey-level steps again as the device would (Renormalized). Validation drawn from the training split
//     shares its shortcuts; these rows show cues a model should not rely on (the training
//     split's normals are framed wider, and their originals are narrower, so the squash to a
//     square compresses them less), so recipes are compared on their mean balanced accuracy.
//   - Evaluation (EvaluateTFLite): the int8 .tflite in the device's engine, on images
//     decoded and preprocessed exactly as the device does (imaging.Decode, imaging.Preprocess),
//     at the threshold stored in the model; accuracy, sensitivity, specificity, precision and
//     AUC with stratified bootstrap 95% intervals (Bootstrap), the confusion matrix,
//     int8-vs-float agreement (Agree), and ROC, precision-recall, calibration and confusion
//     plots (EvalReport.WritePlots). MODEL.md is the model card built from it.
//
// SplitByBatch is the alternative validation split (a whole acquisition batch of normals held
// out) for recipes aimed at the distribution shift of the test split's normals.
//
// The network input is x = p/255 for grey pixel p (after the window), which is exactly what
// the int8 input (scale 1/255, zero point −128, q = p − 128) represents, so training,
// calibration and the device agree on every input value.
package quantize
