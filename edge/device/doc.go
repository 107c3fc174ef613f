// Package device holds the cxr-edge daemon's configuration and the pipeline that wires intake,
// store, decoding, the engine, the decision, the indicator and the publisher together.
//
// The pipeline is written against small interfaces defined here (Scorer, Store, Publisher,
// Indicator), so each part can be replaced or tested on its own. The daemon (Run) also serves
// the kiosk screen (thumbnails made here, kept in memory) and reloads the model on request
// (DaemonOptions.Reload, SIGHUP in cxr-edge).
//
// The pneumonia model ships inside the binary (model/cxr-pneumonia-int8.tflite, embedded at
// build time): an empty model.path loads it, so a fresh device needs no model file.
package device
