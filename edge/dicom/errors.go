package dicom

import (
	"errors"
	"fmt"
	"unicode/utf8"
)

// Sentinel errors. Every error returned by Decode wraps exactly one of them (match with
// errors.Is); the wrapping message names the element, offset or value at fault.
var (
	// ErrNotDICOM: the data do not start like a DICOM file or dataset.
	ErrNotDICOM = errors.New("dicom: not a DICOM file")
	// ErrTruncated: the data end inside an element, sequence or pixel data.
	ErrTruncated = errors.New("dicom: truncated")
	// ErrMalformed: the structure is invalid (bad item tag, inconsistent pixel attributes, a
	// pixel data element too short for the image it describes, a corrupt JPEG, ...).
	ErrMalformed = errors.New("dicom: malformed")
	// ErrUnsupportedTransferSyntax: the transfer syntax is valid DICOM but cannot be decoded here.
	ErrUnsupportedTransferSyntax = errors.New("dicom: unsupported transfer syntax")
	// ErrUnsupported: the image uses a pixel encoding this package does not decode (palette
	// colour, 32-bit pixels, YBR_FULL_422 uncompressed, ...).
	ErrUnsupported = errors.New("dicom: unsupported image encoding")
	// ErrNoPixelData: the dataset is well formed but holds no image.
	ErrNoPixelData = errors.New("dicom: no pixel data")
	// ErrLimit: the input exceeds one of the limits in Options.
	ErrLimit = errors.New("dicom: limit exceeded")
)

// maxQuoted is how much of a value taken from the file an error message quotes. Decode
// errors become the "reason" of an unreadable result, which leaves the device: a value
// must neither make that payload large nor carry more of the file than needed to name it.
const maxQuoted = 64 // the longest valid UID

// quoted returns v for an error message: clipped to maxQuoted bytes (at a rune boundary)
// and quoted.
func quoted(v string) string {
	if len(v) <= maxQuoted {
		return fmt.Sprintf("%q", v)
	}
	cut := maxQuoted
	for cut > 0 && !utf8.RuneStart(v[cut]) {
		cut--
	}
	return fmt.Sprintf("%q… (%d bytes)", v[:cut], len(v))
}
