package dicom

import (
	"bytes"
	"compress/flate"
	"encoding/binary"
	"image"
	"image/jpeg"
	"io"
	"slices"
	"strconv"
	"testing"
)

// This file synthesises small DICOM files for the tests and the fuzz seed corpus, written from
// the encoding rules of PS3.5 (elements, sequences, encapsulation) and PS3.10 (preamble, meta).

// el is one element to encode. Exactly one of val, items or frags is used.
type el struct {
	tag       uint32
	vr        string
	val       []byte
	items     [][]el   // sequence items (vr "SQ", or "UN" with undefined length)
	frags     [][]byte // encapsulated pixel data: basic offset table, then fragments
	undefined bool     // sequence and its items written with undefined length
}

// layout says how a dataset is written.
type layout struct {
	explicit bool   // explicit VR (else implicit)
	preamble bool   // 128-byte preamble + "DICM"
	meta     bool   // file meta group
	ts       string // transfer syntax UID in the meta group (default from explicit)
}

func us(t uint32, v uint16) el {
	return el{tag: t, vr: "US", val: binary.LittleEndian.AppendUint16(nil, v)}
}

// str encodes a text value padded to even length (UI with NUL, others with space).
func str(t uint32, vr, s string) el {
	b := []byte(s)
	if len(b)%2 == 1 {
		if vr == "UI" {
			b = append(b, 0)
		} else {
			b = append(b, ' ')
		}
	}
	return el{tag: t, vr: vr, val: b}
}

func raw(t uint32, vr string, b []byte) el { return el{tag: t, vr: vr, val: b} }

func seq(t uint32, undefined bool, items ...[]el) el {
	return el{tag: t, vr: "SQ", items: items, undefined: undefined}
}

func le16(b []byte, v uint16) []byte { return binary.LittleEndian.AppendUint16(b, v) }
func le32(b []byte, v uint32) []byte { return binary.LittleEndian.AppendUint32(b, v) }

func writeTag(b []byte, t uint32) []byte { return le16(le16(b, uint16(t>>16)), uint16(t)) }

// encodeElems writes elements in ascending tag order.
func encodeElems(b []byte, els []el, explicit bool) []byte {
	els = slices.Clone(els)
	slices.SortStableFunc(els, func(x, y el) int {
		switch {
		case x.tag < y.tag:
			return -1
		case x.tag > y.tag:
			return 1
		}
		return 0
	})
	for _, e := range els {
		b = encodeElem(b, e, explicit)
	}
	return b
}

func encodeElem(b []byte, e el, explicit bool) []byte {
	var value []byte
	undefined := false
	switch {
	case e.frags != nil:
		undefined = true
		for _, f := range e.frags {
			value = writeTag(value, uint32(tagItem))
			value = le32(value, uint32(len(f)))
			value = append(value, f...)
		}
		value = le32(writeTag(value, uint32(tagSequenceDelimitation)), 0)
	case e.items != nil:
		inner := explicit && !(e.vr == "UN" && e.undefined)
		for _, it := range e.items {
			body := encodeElems(nil, it, inner)
			value = writeTag(value, uint32(tagItem))
			if e.undefined {
				value = le32(value, undefinedLength)
				value = append(value, body...)
				value = le32(writeTag(value, uint32(tagItemDelimitation)), 0)
			} else {
				value = le32(value, uint32(len(body)))
				value = append(value, body...)
			}
		}
		if e.undefined {
			undefined = true
			value = le32(writeTag(value, uint32(tagSequenceDelimitation)), 0)
		}
	default:
		value = e.val
	}
	length := uint32(len(value))
	if undefined {
		length = undefinedLength
	}
	b = writeTag(b, e.tag)
	if explicit {
		b = append(b, e.vr...)
		if longVR(e.vr) {
			b = le32(append(b, 0, 0), length)
		} else {
			b = le16(b, uint16(length))
		}
	} else {
		b = le32(b, length)
	}
	return append(b, value...)
}

// encodeFile writes a complete file or bare dataset.
func encodeFile(l layout, els []el) []byte {
	var b []byte
	if l.preamble {
		b = append(make([]byte, 128), "DICM"...)
	}
	if l.meta {
		ts := l.ts
		if ts == "" {
			ts = ImplicitVRLittleEndian
			if l.explicit {
				ts = ExplicitVRLittleEndian
			}
		}
		meta := encodeElems(nil, []el{
			raw(0x00020001, "OB", []byte{0, 1}),
			str(0x00020010, "UI", ts),
			str(0x00020012, "UI", "1.2.3.4.5.6.7"),
		}, true)
		b = encodeElem(b, raw(0x00020000, "UL", le32(nil, uint32(len(meta)))), true)
		b = append(b, meta...)
	}
	return encodeElems(b, els, l.explicit)
}

// imageSpec describes a synthetic monochrome image.
type imageSpec struct {
	w, h                 int
	bitsAlloc, bitsStore int
	highBit              int
	signed               bool
	photometric          string
	pixels               []byte // little-endian words
	extra                []el
}

func (s imageSpec) elems() []el {
	rep := uint16(0)
	if s.signed {
		rep = 1
	}
	pvr := "OW"
	if s.bitsAlloc == 8 {
		pvr = "OB"
	}
	els := []el{
		str(0x00080016, "UI", "1.2.840.10008.5.1.4.1.1.1"),
		str(0x00080018, "UI", "1.2.826.0.1.3680043.2.1125.1.1"),
		str(0x00080060, "CS", "CR"),
		str(0x0020000D, "UI", "1.2.826.0.1.3680043.2.1125.2"),
		str(0x0020000E, "UI", "1.2.826.0.1.3680043.2.1125.3"),
		us(0x00280002, 1),
		str(0x00280004, "CS", s.photometric),
		us(0x00280010, uint16(s.h)),
		us(0x00280011, uint16(s.w)),
		us(0x00280100, uint16(s.bitsAlloc)),
		us(0x00280101, uint16(s.bitsStore)),
		us(0x00280102, uint16(s.highBit)),
		us(0x00280103, rep),
		raw(0x7FE00010, pvr, s.pixels),
	}
	return append(els, s.extra...)
}

// ramp8 returns w×h 8-bit pixels covering 0..255.
func ramp8(w, h int) []byte {
	p := make([]byte, w*h)
	for i := range p {
		p[i] = byte(i * 255 / max(1, len(p)-1))
	}
	return p
}

// ramp16 returns w×h 16-bit words with stored values lo..hi placed at highBit.
func ramp16(w, h int, lo, hi int, bitsStored, highBit int) []byte {
	n := w * h
	var p []byte
	for i := 0; i < n; i++ {
		v := lo + i*(hi-lo)/max(1, n-1)
		word := uint16((uint32(v) & (1<<bitsStored - 1)) << (highBit + 1 - bitsStored))
		p = le16(p, word)
	}
	return p
}

// tinyJPEG encodes a small grey gradient with image/jpeg.
func tinyJPEG(t testing.TB, w, h int) []byte {
	t.Helper()
	g := image.NewGray(image.Rect(0, 0, w, h))
	for i := range g.Pix {
		g.Pix[i] = byte((i % w) * 255 / max(1, w-1))
	}
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, g, &jpeg.Options{Quality: 90}); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// jpegFile wraps JPEG frames as JPEG Baseline pixel data with an empty basic offset table.
func jpegFile(w, h int, photometric string, frames ...[]byte) []byte {
	s := imageSpec{w: w, h: h, bitsAlloc: 8, bitsStore: 8, highBit: 7, photometric: photometric}
	els := s.elems()
	els[len(els)-1] = el{tag: uint32(tagPixelData), vr: "OB", frags: append([][]byte{{}}, frames...)}
	if len(frames) > 1 {
		els = append(els, str(0x00280008, "IS", strconv.Itoa(len(frames))))
	}
	return encodeFile(layout{explicit: true, preamble: true, meta: true, ts: JPEGBaseline8Bit}, els)
}

// seedFiles are the small, varied files used as fuzz seeds and truncation inputs.
func seedFiles(t testing.TB) map[string][]byte {
	t.Helper()
	mono8 := imageSpec{w: 4, h: 3, bitsAlloc: 8, bitsStore: 8, highBit: 7, photometric: "MONOCHROME2", pixels: ramp8(4, 3)}
	mono16 := imageSpec{w: 4, h: 3, bitsAlloc: 16, bitsStore: 12, highBit: 11, photometric: "MONOCHROME1",
		pixels: ramp16(4, 3, 0, 4095, 12, 11),
		extra: []el{str(0x00281050, "DS", "2048\\1000"), str(0x00281051, "DS", "4096\\500"),
			str(0x00281052, "DS", "-10"), str(0x00281053, "DS", "1.5")}}
	signed := imageSpec{w: 3, h: 3, bitsAlloc: 16, bitsStore: 16, highBit: 15, signed: true, photometric: "MONOCHROME2",
		pixels: ramp16(3, 3, -1000, 3000, 16, 15)}
	nested := mono8
	nested.extra = []el{
		raw(0x00091010, "LO", []byte("PRIVATE")),                                                 // private tag
		raw(0x00091011, "UN", []byte{1, 2, 3}),                                                   // odd length
		seq(0x00081140, true, []el{seq(0x00081199, true, []el{str(0x00081150, "UI", "1.2.3")})}), // nested, undefined
		seq(0x00400275, false, []el{str(0x00400009, "SH", "X")}),                                 // defined length
	}
	return map[string][]byte{
		"explicit-preamble-8bit-mono2":   encodeFile(layout{explicit: true, preamble: true, meta: true}, mono8.elems()),
		"implicit-preamble-8bit-mono2":   encodeFile(layout{preamble: true, meta: true}, mono8.elems()),
		"implicit-nometa-16bit-mono1":    encodeFile(layout{}, mono16.elems()),
		"explicit-nometa-16bit-mono1":    encodeFile(layout{explicit: true}, mono16.elems()),
		"explicit-meta-nopreamble-16bit": encodeFile(layout{explicit: true, meta: true}, mono16.elems()),
		"explicit-signed-16bit":          encodeFile(layout{explicit: true, preamble: true, meta: true}, signed.elems()),
		"explicit-sequences-private":     encodeFile(layout{explicit: true, preamble: true, meta: true}, nested.elems()),
		"implicit-sequences-private":     encodeFile(layout{preamble: true, meta: true}, nested.elems()),
		"jpeg-baseline-8x8":              jpegFile(8, 8, "MONOCHROME2", tinyJPEG(t, 8, 8)),
		"jpeg-baseline-mono1-2frames":    jpegFile(8, 8, "MONOCHROME1", tinyJPEG(t, 8, 8), tinyJPEG(t, 8, 8)),
	}
}

func flateWriter(w io.Writer) (*flate.Writer, error) {
	return flate.NewWriter(w, flate.BestCompression)
}
