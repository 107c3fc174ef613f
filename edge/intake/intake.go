// Package intake brings images into the device: a hot folder watched with fsnotify (plus a
// periodic rescan) and an HTTP API. Both hand each input to a Processor and report its result.
// The HTTP listener also serves the kiosk screen (GET /, fed by a Screen).
//
// Rule for producers writing into the hot folder: either write the file elsewhere on the same
// file system and rename it in (atomic), or write it in place and close it. Names beginning
// with "." or ending in ".tmp", ".part" or ".partial" are ignored, so a producer may also write
// "x.jpg.part" in place and rename it to "x.jpg" when complete. A file is read only after its
// size and modification time stayed unchanged for the settle interval, and it is checked again
// after reading, so a slow writer's half-written file is never scored.
package intake

import (
	"bytes"
	"context"
	"errors"
	"time"

	"github.com/cxr-edge/cxr-edge/edge/dicom"
	"github.com/cxr-edge/cxr-edge/telemetry"
)

// Formats recognised by Sniff.
const (
	FormatJPEG  = "jpeg"
	FormatPNG   = "png"
	FormatDICOM = "dicom"
)

// Sources an input can come from (telemetry.Result.Source).
const (
	SourceFolder = "folder"
	SourceHTTP   = "http"
)

// Sentinel errors.
var (
	// ErrUnsupported: the bytes are not a JPEG, PNG or DICOM file.
	ErrUnsupported = errors.New("intake: unsupported format (want JPEG, PNG or DICOM)")
	// ErrTooLarge: the input exceeds the configured byte limit.
	ErrTooLarge = errors.New("intake: input too large")
	// ErrEmpty: the input has no bytes.
	ErrEmpty = errors.New("intake: empty input")
)

// Sniff names the format of data from its content, never from a file name: "jpeg", "png",
// "dicom", or "" when it is none of them.
func Sniff(data []byte) string {
	switch {
	case len(data) >= 3 && data[0] == 0xFF && data[1] == 0xD8 && data[2] == 0xFF:
		return FormatJPEG
	case bytes.HasPrefix(data, []byte("\x89PNG\r\n\x1a\n")):
		return FormatPNG
	case dicom.IsDICOM(data):
		return FormatDICOM
	}
	return ""
}

// Input is one image handed to a Processor.
type Input struct {
	Source     string // SourceFolder, SourceHTTP, …
	Name       string // original file name, if any; stays on the device
	Format     string // from Sniff
	Data       []byte
	ReceivedAt time.Time
}

// Processor scores an input and returns its result. A result labelled "unreadable" is a
// normal outcome (bad image); an error means the input could not be handled now (store
// failure, shutdown) and should be retried.
type Processor interface {
	Process(ctx context.Context, in Input) (telemetry.Result, error)
}

// ProcessorFunc adapts a function to Processor.
type ProcessorFunc func(ctx context.Context, in Input) (telemetry.Result, error)

// Process calls f.
func (f ProcessorFunc) Process(ctx context.Context, in Input) (telemetry.Result, error) {
	return f(ctx, in)
}
