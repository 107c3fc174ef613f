package dicom

import (
	"bytes"
	"compress/flate"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
)

// tag is a DICOM attribute tag, group<<16 | element.
type tag uint32

func (t tag) String() string { return fmt.Sprintf("(%04X,%04X)", uint32(t)>>16, uint32(t)&0xFFFF) }

func (t tag) group() uint16 { return uint16(t >> 16) }

const (
	tagTransferSyntax       tag = 0x00020010
	tagSOPClassUID          tag = 0x00080016
	tagSOPInstanceUID       tag = 0x00080018
	tagModality             tag = 0x00080060
	tagBodyPartExamined     tag = 0x00180015
	tagViewPosition         tag = 0x00185101
	tagStudyInstanceUID     tag = 0x0020000D
	tagSeriesInstanceUID    tag = 0x0020000E
	tagSamplesPerPixel      tag = 0x00280002
	tagPhotometric          tag = 0x00280004
	tagPlanarConfiguration  tag = 0x00280006
	tagNumberOfFrames       tag = 0x00280008
	tagRows                 tag = 0x00280010
	tagColumns              tag = 0x00280011
	tagBitsAllocated        tag = 0x00280100
	tagBitsStored           tag = 0x00280101
	tagHighBit              tag = 0x00280102
	tagPixelRepresentation  tag = 0x00280103
	tagWindowCenter         tag = 0x00281050
	tagWindowWidth          tag = 0x00281051
	tagRescaleIntercept     tag = 0x00281052
	tagRescaleSlope         tag = 0x00281053
	tagVOILUTFunction       tag = 0x00281056
	tagPixelData            tag = 0x7FE00010
	tagItem                 tag = 0xFFFEE000
	tagItemDelimitation     tag = 0xFFFEE00D
	tagSequenceDelimitation tag = 0xFFFEE0DD

	undefinedLength = 0xFFFFFFFF
)

// attrs holds the values of the few attributes the decoder keeps. Nothing else is ever copied
// out of the input: this list is the privacy boundary of the package.
type attrs struct {
	transferSyntax              string
	sopClassUID, sopInstanceUID string
	modality, bodyPart, view    string
	studyUID, seriesUID         string
	photometric, voiFunction    string
	windowCenter, windowWidth   string
	rescaleIntercept            string
	rescaleSlope                string
	numberOfFrames              string
	samples, planar             int
	rows, columns               int
	bitsAllocated, bitsStored   int
	highBit, pixelRep           int
	has                         map[tag]bool

	// Pixel data: either native bytes or the fragments of an encapsulated sequence.
	pixels        []byte
	fragments     [][]byte
	encapsulated  bool
	pixelDataSeen bool
}

// parser walks a dataset in one byte slice.
type parser struct {
	d        []byte
	opts     Options
	elements int
	a        *attrs
}

func (p *parser) truncated(at int, what string) error {
	return fmt.Errorf("%w: %s at offset %d needs more than the %d bytes left", ErrTruncated, what, at, len(p.d)-at)
}

// isVR reports whether b holds two upper-case letters, the shape of an explicit VR.
func isVR(b []byte) bool {
	return len(b) >= 2 && b[0] >= 'A' && b[0] <= 'Z' && b[1] >= 'A' && b[1] <= 'Z'
}

// longVR reports whether an explicit VR uses the 2 reserved bytes + 32-bit length form.
func longVR(vr string) bool {
	switch vr {
	case "OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV":
		return true
	}
	return false
}

// header is one element header.
type header struct {
	tag    tag
	vr     string // "" in implicit VR
	length uint32
	value  int // offset of the value
}

// readHeader reads the element header at pos.
func (p *parser) readHeader(pos int, explicit bool) (header, error) {
	d := p.d
	if len(d)-pos < 8 {
		return header{}, p.truncated(pos, "element header")
	}
	t := tag(uint32(binary.LittleEndian.Uint16(d[pos:]))<<16 | uint32(binary.LittleEndian.Uint16(d[pos+2:])))
	// Items and delimiters never carry a VR, whatever the transfer syntax.
	if !explicit || t.group() == 0xFFFE {
		return header{tag: t, length: binary.LittleEndian.Uint32(d[pos+4:]), value: pos + 8}, nil
	}
	if !isVR(d[pos+4:]) {
		// The offending bytes are not quoted: they could be part of a patient's name.
		return header{}, fmt.Errorf("%w: element %v at offset %d has no valid explicit VR", ErrMalformed, t, pos)
	}
	vr := string(d[pos+4 : pos+6])
	if !longVR(vr) {
		return header{tag: t, vr: vr, length: uint32(binary.LittleEndian.Uint16(d[pos+6:])), value: pos + 8}, nil
	}
	if len(d)-pos < 12 {
		return header{}, p.truncated(pos, "element header")
	}
	return header{tag: t, vr: vr, length: binary.LittleEndian.Uint32(d[pos+8:]), value: pos + 12}, nil
}

// countElement enforces Options.MaxElements.
func (p *parser) countElement(pos int) error {
	p.elements++
	if p.elements > p.opts.MaxElements {
		return fmt.Errorf("%w: more than MaxElements %d elements (at offset %d)", ErrLimit, p.opts.MaxElements, pos)
	}
	return nil
}

// dataset parses elements from pos. At depth 0 it records the attributes the decoder keeps and
// stops after the pixel data; inside an item (depth > 0) it only skips, and returns after the
// item delimitation when inItem is set. It returns the offset after what it consumed.
func (p *parser) dataset(pos, end int, explicit bool, depth int, inItem bool) (int, error) {
	for pos < end {
		if err := p.countElement(pos); err != nil {
			return 0, err
		}
		h, err := p.readHeader(pos, explicit)
		if err != nil {
			return 0, err
		}
		switch {
		case h.tag == tagItemDelimitation && inItem:
			return h.value, nil
		case h.tag.group() == 0xFFFE:
			return 0, fmt.Errorf("%w: unexpected %v at offset %d outside a sequence", ErrMalformed, h.tag, pos)
		}
		if depth == 0 && h.tag == tagPixelData {
			return p.pixelData(h)
		}
		if h.length == undefinedLength {
			// An undefined length means a sequence (SQ, or UN/OB/OW holding one). Per CP-246 an
			// undefined-length UN sequence is encoded in implicit VR little endian.
			inner := explicit && h.vr != "UN"
			if pos, err = p.sequence(h.value, inner, depth+1); err != nil {
				return 0, fmt.Errorf("sequence %v: %w", h.tag, err)
			}
			continue
		}
		if uint64(h.length) > uint64(p.opts.MaxElementLength) {
			return 0, fmt.Errorf("%w: element %v at offset %d is %d bytes, more than MaxElementLength %d", ErrLimit, h.tag, pos, h.length, p.opts.MaxElementLength)
		}
		if uint64(h.length) > uint64(len(p.d)-h.value) {
			return 0, p.truncated(h.value, fmt.Sprintf("value of %v (%d bytes)", h.tag, h.length))
		}
		next := h.value + int(h.length)
		if depth == 0 && h.tag.group() != 0x0002 {
			p.record(h, p.d[h.value:next])
		}
		pos = next
	}
	if inItem {
		return 0, p.truncated(pos, "item delimitation")
	}
	return pos, nil
}

// sequence skips the items of an undefined-length sequence starting at pos and returns the
// offset after its sequence delimitation item.
func (p *parser) sequence(pos int, explicit bool, depth int) (int, error) {
	if depth > p.opts.MaxDepth {
		return 0, fmt.Errorf("%w: sequences nested deeper than MaxDepth %d (at offset %d)", ErrLimit, p.opts.MaxDepth, pos)
	}
	for {
		if err := p.countElement(pos); err != nil {
			return 0, err
		}
		if len(p.d)-pos < 8 {
			return 0, p.truncated(pos, "item or sequence delimitation")
		}
		h, _ := p.readHeader(pos, false) // items have no VR; 8 bytes are present
		switch h.tag {
		case tagSequenceDelimitation:
			return h.value, nil
		case tagItem:
		default:
			return 0, fmt.Errorf("%w: expected an item in a sequence at offset %d, found %v", ErrMalformed, pos, h.tag)
		}
		if h.length == undefinedLength {
			var err error
			if pos, err = p.dataset(h.value, len(p.d), explicit, depth, true); err != nil {
				return 0, err
			}
			continue
		}
		if uint64(h.length) > uint64(len(p.d)-h.value) {
			return 0, p.truncated(h.value, fmt.Sprintf("item of %d bytes", h.length))
		}
		pos = h.value + int(h.length)
	}
}

// pixelData records the top-level pixel data element and returns the end of the parse: nothing
// after it (only padding and signatures may follow) is needed.
func (p *parser) pixelData(h header) (int, error) {
	a := p.a
	a.pixelDataSeen = true
	if h.length != undefinedLength {
		if uint64(h.length) > uint64(len(p.d)-h.value) {
			return 0, p.truncated(h.value, fmt.Sprintf("pixel data of %d bytes", h.length))
		}
		a.pixels = p.d[h.value : h.value+int(h.length)]
		return h.value + int(h.length), nil
	}
	// Encapsulated: an item holding the basic offset table, then one item per fragment, then a
	// sequence delimitation (PS3.5 A.4).
	a.encapsulated = true
	pos := h.value
	first := true
	for {
		if err := p.countElement(pos); err != nil {
			return 0, err
		}
		if len(p.d)-pos < 8 {
			return 0, p.truncated(pos, "pixel data item or sequence delimitation")
		}
		ih, _ := p.readHeader(pos, false)
		switch ih.tag {
		case tagSequenceDelimitation:
			return ih.value, nil
		case tagItem:
		default:
			return 0, fmt.Errorf("%w: expected a pixel data item at offset %d, found %v", ErrMalformed, pos, ih.tag)
		}
		if ih.length == undefinedLength {
			return 0, fmt.Errorf("%w: pixel data fragment at offset %d has undefined length", ErrMalformed, pos)
		}
		if uint64(ih.length) > uint64(len(p.d)-ih.value) {
			return 0, p.truncated(ih.value, fmt.Sprintf("pixel data fragment of %d bytes", ih.length))
		}
		frag := p.d[ih.value : ih.value+int(ih.length)]
		if first {
			// The basic offset table is only needed to find frames after the first.
			first = false
		} else {
			a.fragments = append(a.fragments, frag)
		}
		pos = ih.value + int(ih.length)
	}
}

// record keeps the value of an attribute the decoder needs; it ignores every other tag.
func (p *parser) record(h header, v []byte) {
	a := p.a
	str := func() string { return strings.TrimRight(string(v), " \x00") }
	us := func() int {
		// Tolerate a wrong VR: read an unsigned 16-bit value if two bytes are there.
		if len(v) < 2 {
			return -1
		}
		return int(binary.LittleEndian.Uint16(v))
	}
	switch h.tag {
	case tagTransferSyntax:
		a.transferSyntax = str()
	case tagSOPClassUID:
		a.sopClassUID = str()
	case tagSOPInstanceUID:
		a.sopInstanceUID = str()
	case tagModality:
		a.modality = strings.TrimSpace(str())
	case tagBodyPartExamined:
		a.bodyPart = strings.TrimSpace(str())
	case tagViewPosition:
		a.view = strings.TrimSpace(str())
	case tagStudyInstanceUID:
		a.studyUID = str()
	case tagSeriesInstanceUID:
		a.seriesUID = str()
	case tagPhotometric:
		a.photometric = strings.TrimSpace(str())
	case tagVOILUTFunction:
		a.voiFunction = strings.TrimSpace(str())
	case tagWindowCenter:
		a.windowCenter = str()
	case tagWindowWidth:
		a.windowWidth = str()
	case tagRescaleIntercept:
		a.rescaleIntercept = str()
	case tagRescaleSlope:
		a.rescaleSlope = str()
	case tagNumberOfFrames:
		a.numberOfFrames = str()
	case tagSamplesPerPixel:
		a.samples = us()
	case tagPlanarConfiguration:
		a.planar = us()
	case tagRows:
		a.rows = us()
	case tagColumns:
		a.columns = us()
	case tagBitsAllocated:
		a.bitsAllocated = us()
	case tagBitsStored:
		a.bitsStored = us()
	case tagHighBit:
		a.highBit = us()
	case tagPixelRepresentation:
		a.pixelRep = us()
	default:
		return
	}
	a.has[h.tag] = true
}

// firstNumber parses the first value of a multi-valued DS/IS string ("550\600" → 550).
func firstNumber(s string) (float64, bool) {
	if i := strings.IndexByte(s, '\\'); i >= 0 {
		s = s[:i]
	}
	f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, false
	}
	return f, true
}

// looksExplicit reports whether the element at pos has an explicit VR.
func looksExplicit(d []byte, pos int) bool {
	return len(d)-pos >= 6 && isVR(d[pos+4:])
}

// plausibleStart reports whether pos begins a little-endian dataset: a group 0002 or 0008 tag
// (first in every file and in ACR-NEMA datasets) with a sane explicit VR or implicit length.
func plausibleStart(d []byte, pos int) bool {
	if len(d)-pos < 8 {
		return false
	}
	g := binary.LittleEndian.Uint16(d[pos:])
	if g != 0x0002 && g != 0x0008 {
		return false
	}
	if isVR(d[pos+4:]) {
		return true
	}
	n := binary.LittleEndian.Uint32(d[pos+4:])
	return n == undefinedLength || uint64(n) <= uint64(len(d)-pos-8)
}

// parse reads the file meta group (if any) and the dataset of a Part 10 file or bare dataset.
func parse(data []byte, opts Options) (*attrs, error) {
	a := &attrs{has: map[tag]bool{}, samples: 1}
	p := &parser{d: data, opts: opts, a: a}
	pos := 0
	switch {
	case len(data) >= 132 && string(data[128:132]) == "DICM":
		pos = 132
	case len(data) >= 4 && string(data[:4]) == "DICM":
		pos = 4 // preamble missing but prefix kept, as some writers do
	case plausibleStart(data, 0):
	case len(data) >= 2 && data[0] == 0 && (data[1] == 0x02 || data[1] == 0x08):
		return nil, fmt.Errorf("%w: dataset starts with a big-endian tag (%s)", ErrUnsupportedTransferSyntax, TransferSyntaxName("1.2.840.10008.1.2.2"))
	default:
		return nil, fmt.Errorf("%w: no DICM prefix and no group 0002/0008 element at the start", ErrNotDICOM)
	}

	// File meta group: always explicit VR little endian (detected anyway, for broken writers).
	metaEnd := pos
	for len(data)-metaEnd >= 8 && binary.LittleEndian.Uint16(data[metaEnd:]) == 0x0002 {
		h, err := p.readHeader(metaEnd, looksExplicit(data, metaEnd))
		if err != nil {
			return nil, fmt.Errorf("file meta: %w", err)
		}
		if h.length == undefinedLength || uint64(h.length) > uint64(len(data)-h.value) {
			return nil, fmt.Errorf("file meta: %w", p.truncated(h.value, fmt.Sprintf("value of %v", h.tag)))
		}
		if uint64(h.length) > uint64(opts.MaxElementLength) {
			return nil, fmt.Errorf("%w: file meta element %v is %d bytes", ErrLimit, h.tag, h.length)
		}
		if err := p.countElement(metaEnd); err != nil {
			return nil, err
		}
		p.record(h, data[h.value:h.value+int(h.length)])
		metaEnd = h.value + int(h.length)
	}
	if pos > 0 && len(data)-metaEnd < 8 {
		// A DICM prefix promises a meta group and a dataset (PS3.10 7.1).
		return nil, p.truncated(metaEnd, "dataset after the DICM prefix")
	}
	pos = metaEnd

	ts := a.transferSyntax
	explicit := true
	switch ts {
	case "":
		// No meta (ACR-NEMA style or bare dataset): detect from the first element.
		explicit = looksExplicit(data, pos)
		if explicit {
			a.transferSyntax = ExplicitVRLittleEndian
		} else {
			a.transferSyntax = ImplicitVRLittleEndian
		}
	case ImplicitVRLittleEndian, ExplicitVRLittleEndian:
		// Some writers declare one and write the other; trust the bytes.
		explicit = looksExplicit(data, pos)
	case DeflatedExplicitVRLittleEndian:
		inflated, err := inflate(data[pos:], opts.MaxFileSize)
		if err != nil {
			return nil, err
		}
		p.d, pos = inflated, 0
	case JPEGBaseline8Bit:
	default:
		return nil, fmt.Errorf("%w: %s (%s)", ErrUnsupportedTransferSyntax, quoted(ts), TransferSyntaxName(ts))
	}
	if _, err := p.dataset(pos, len(p.d), explicit, 0, false); err != nil {
		return nil, err
	}
	if a.encapsulated != (a.transferSyntax == JPEGBaseline8Bit) && a.pixelDataSeen {
		if a.encapsulated {
			return nil, fmt.Errorf("%w: encapsulated pixel data in %s", ErrMalformed, TransferSyntaxName(a.transferSyntax))
		}
		return nil, fmt.Errorf("%w: native pixel data in a JPEG Baseline file", ErrMalformed)
	}
	return a, nil
}

// inflate decompresses a deflated dataset (raw deflate, PS3.5 A.5), refusing output larger
// than limit so that a small "deflate bomb" cannot exhaust memory.
func inflate(b []byte, limit int64) ([]byte, error) {
	r := flate.NewReader(bytes.NewReader(b))
	defer r.Close()
	out, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		if err == io.ErrUnexpectedEOF {
			return nil, fmt.Errorf("%w: deflated dataset: %v", ErrTruncated, err)
		}
		return nil, fmt.Errorf("%w: deflated dataset: %v", ErrMalformed, err)
	}
	if int64(len(out)) > limit {
		return nil, fmt.Errorf("%w: deflated dataset inflates to more than MaxFileSize %d bytes", ErrLimit, limit)
	}
	return out, nil
}
