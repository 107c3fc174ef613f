// Package imaging is the one preprocessing path of cxr-edge: it decodes a chest X-ray (JPEG or
// PNG, 8- or 16-bit, grey or colour) under size limits, converts it to grey, resizes it to the
// model's input by squashing it to a square, and writes the model's input tensor.
//
// Training, evaluation and the device all call [Preprocess] (or [Grey] for the 8-bit grey
// plane that Preprocess quantizes), so the model sees on the device exactly the pixel values it
// was trained on. Images from other decoders (the DICOM package returns *image.Gray16 or
// *image.Gray) go through the same functions.
package imaging

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	"io"

	// The only formats accepted; Decode also checks the format name, so formats registered by
	// other packages of the same binary are still refused.
	_ "image/jpeg"
	_ "image/png"
)

// Sentinel errors, matched with errors.Is.
var (
	// ErrTooLarge: the file has more bytes, or the image more pixels, than Options allow.
	ErrTooLarge = errors.New("imaging: image too large")
	// ErrUnsupportedFormat: the data is not a JPEG or PNG image.
	ErrUnsupportedFormat = errors.New("imaging: unsupported image format")
	// ErrCorrupt: the data claims to be a JPEG or PNG but cannot be decoded (truncated, bad
	// header, zero size, checksum mismatch).
	ErrCorrupt = errors.New("imaging: corrupt image")
)

// Default limits. A 2128×1630 hospital export is 3.5 Mpixel and ~1 MB; the defaults leave room
// for 8k×8k detectors while bounding the decoder's allocation (64 Mpixel × 8 bytes for a 16-bit
// colour PNG = 512 MB is the worst case a device must survive).
const (
	DefaultMaxFileBytes = 64 << 20
	DefaultMaxPixels    = 64 << 20
)

// Options limit what Decode accepts. The zero value means the defaults.
type Options struct {
	// MaxFileBytes is the largest encoded size read; 0 means DefaultMaxFileBytes.
	MaxFileBytes int64
	// MaxPixels is the largest width×height decoded, checked from the header before any pixel
	// buffer is allocated; 0 means DefaultMaxPixels.
	MaxPixels int64
}

func (o Options) withDefaults() Options {
	if o.MaxFileBytes <= 0 {
		o.MaxFileBytes = DefaultMaxFileBytes
	}
	if o.MaxPixels <= 0 {
		o.MaxPixels = DefaultMaxPixels
	}
	return o
}

// Info describes a decoded image as found in its header.
type Info struct {
	Format        string // "jpeg" or "png"
	Width, Height int
}

// Decode reads at most opts.MaxFileBytes from r and decodes a JPEG or PNG image. The header is
// checked against opts.MaxPixels before decoding, so a decompression bomb is refused without
// allocating its pixels.
func Decode(r io.Reader, opts Options) (image.Image, Info, error) {
	opts = opts.withDefaults()
	data, err := io.ReadAll(io.LimitReader(r, opts.MaxFileBytes+1))
	if err != nil {
		return nil, Info{}, fmt.Errorf("imaging: reading image: %w", err)
	}
	if int64(len(data)) > opts.MaxFileBytes {
		return nil, Info{}, fmt.Errorf("%w: more than %d bytes", ErrTooLarge, opts.MaxFileBytes)
	}
	return DecodeBytes(data, opts)
}

// DecodeBytes is Decode for data already in memory.
func DecodeBytes(data []byte, opts Options) (image.Image, Info, error) {
	opts = opts.withDefaults()
	if int64(len(data)) > opts.MaxFileBytes {
		return nil, Info{}, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(data), opts.MaxFileBytes)
	}
	cfg, format, err := image.DecodeConfig(bytes.NewReader(data))
	if err != nil {
		if errors.Is(err, image.ErrFormat) {
			return nil, Info{}, fmt.Errorf("%w: not JPEG or PNG", ErrUnsupportedFormat)
		}
		return nil, Info{}, fmt.Errorf("%w: header: %w", ErrCorrupt, err)
	}
	info := Info{Format: format, Width: cfg.Width, Height: cfg.Height}
	if format != "jpeg" && format != "png" {
		return nil, info, fmt.Errorf("%w: %s", ErrUnsupportedFormat, format)
	}
	if cfg.Width <= 0 || cfg.Height <= 0 {
		return nil, info, fmt.Errorf("%w: %s of size %dx%d", ErrCorrupt, format, cfg.Width, cfg.Height)
	}
	if int64(cfg.Width)*int64(cfg.Height) > opts.MaxPixels {
		return nil, info, fmt.Errorf("%w: %s of %dx%d pixels, limit %d", ErrTooLarge, format, cfg.Width, cfg.Height, opts.MaxPixels)
	}
	img, _, err := image.Decode(bytes.NewReader(data))
	if err != nil {
		return nil, info, fmt.Errorf("%w: %s %dx%d: %w", ErrCorrupt, format, cfg.Width, cfg.Height, err)
	}
	return img, info, nil
}
