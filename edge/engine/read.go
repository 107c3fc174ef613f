package engine

import "github.com/cxr-edge/cxr-edge/edge/tflite"

// readModel decodes and validates a .tflite flatbuffer.
func readModel(data []byte) (*tflite.Model, error) { return tflite.Read(data) }
