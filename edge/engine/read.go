package engine

import (
	"fmt"

	"github.com/cxr-edge/cxr-edge/edge/tflite"
)

// readModel decodes a flatbuffer; it is tflite.Read once the format package provides it.
func readModel(data []byte) (*tflite.Model, error) {
	_ = data
	return nil, fmt.Errorf("%w: reading .tflite bytes needs tflite.Read", ErrUnsupported)
}
