package tflite

import (
	"errors"
	"strconv"
	"strings"
)

// Sentinel errors wrapped by every *FormatError; match them with errors.Is.
var (
	// ErrTruncated: an offset or length points past the end of the file.
	ErrTruncated = errors.New("truncated")
	// ErrCorrupt: the flatbuffer structure itself is malformed (bad vtable, missing NUL, …).
	ErrCorrupt = errors.New("corrupt")
	// ErrInvalid: the structure is sound but the model breaks a TFLite rule (an index out of
	// range, constant data of the wrong size, inconsistent quantization, …).
	ErrInvalid = errors.New("invalid model")
	// ErrUnsupported: a valid TFLite feature this package does not handle (sparse tensors,
	// external buffers, unknown tensor types, BuiltinOptions2, …).
	ErrUnsupported = errors.New("unsupported")
	// ErrTooLarge: the file would need more memory than its size justifies, or a tensor or
	// file exceeds this package's size limits.
	ErrTooLarge = errors.New("too large")
)

// FormatError reports where in a model a problem is, e.g.
// "subgraphs[0].tensors[12].quantization.scale".
type FormatError struct {
	Path string // field path from the Model root; "" for the file as a whole
	Err  error  // one of the sentinel errors above
	Msg  string // what is wrong, in words
}

func (e *FormatError) Error() string {
	var b strings.Builder
	b.WriteString("tflite: ")
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Err.Error())
	if e.Msg != "" {
		b.WriteString(": ")
		b.WriteString(e.Msg)
	}
	return b.String()
}

func (e *FormatError) Unwrap() error { return e.Err }

// trail is a field path kept as a stack, so that walking a model allocates nothing until an
// error needs the path as text.
type trail []pathElem

type pathElem struct {
	name  string
	index int // -1: a plain field
}

func (t *trail) push(name string, index int) { *t = append(*t, pathElem{name, index}) }
func (t *trail) pop()                        { *t = (*t)[:len(*t)-1] }

func (t trail) String() string {
	var b strings.Builder
	for i, e := range t {
		if e.name != "" {
			if i > 0 {
				b.WriteByte('.')
			}
			b.WriteString(e.name)
		}
		if e.index >= 0 {
			b.WriteByte('[')
			b.WriteString(strconv.Itoa(e.index))
			b.WriteByte(']')
		}
	}
	return b.String()
}

// errAt builds a FormatError at the trail's path extended by field (which may be "").
func (t trail) errAt(field string, err error, msg string) *FormatError {
	p := t.String()
	if field != "" {
		if p != "" {
			p += "."
		}
		p += field
	}
	return &FormatError{Path: p, Err: err, Msg: msg}
}
