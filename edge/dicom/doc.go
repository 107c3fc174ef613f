// Package dicom decodes DICOM Part 10 files (and old ACR-NEMA style datasets) holding a single
// grey radiograph into an image.Image for the preprocessing in package imaging.
//
// It is written for hostile input from a hot folder or HTTP upload: every length is checked
// against the bytes that remain, limits in Options bound memory and work before anything large
// is allocated, and every error wraps one of the sentinel errors below so callers can tell a
// truncated upload (ErrTruncated) from a file that is not DICOM at all (ErrNotDICOM) or one in a
// transfer syntax the device cannot decode (ErrUnsupportedTransferSyntax).
//
// # Privacy by construction
//
// The parser walks every element but copies the value of only a fixed list of technical
// attributes (image geometry, pixel encoding, VOI window, modality, body part, view position and
// the study/series/instance UIDs). Patient name, id, birth date, all other dates and every other
// attribute are skipped unread, so they cannot appear in the returned value. The decoded pixels
// are always copied; the result never aliases the input buffer. Error messages quote no element
// values other than those of the kept attributes. The UIDs in Info are for use on the device
// only (they are not marshalled to JSON); anything that leaves the device must carry
// KeyedHash(key, uid) instead.
//
// # Supported encodings
//
// Transfer syntaxes: Implicit VR Little Endian (1.2.840.10008.1.2), Explicit VR Little Endian
// (1.2.840.10008.1.2.1), Deflated Explicit VR Little Endian (1.2.840.10008.1.2.1.99) and JPEG
// Baseline (1.2.840.10008.1.2.4.50, decoded with image/jpeg). Files with or without the 128-byte
// preamble and "DICM", and datasets without a file meta group (the transfer syntax is then
// detected from the first element: explicit or implicit VR little endian) are accepted. Every
// other transfer syntax (big endian, JPEG lossless/extended, JPEG-LS, JPEG 2000, RLE, video, ...)
// fails with ErrUnsupportedTransferSyntax and a message naming the UID and the syntax.
//
// Pixels: MONOCHROME1 and MONOCHROME2 with 8 or 16 bits allocated, any BitsStored/HighBit
// layout, signed or unsigned; RGB and YBR_FULL (8-bit, either planar configuration) and colour
// JPEGs are reduced to luma (Y of YCbCr, or BT.601 weights from RGB as color.GrayModel does).
// Only the first frame of a multi-frame image is decoded; Info.Frames tells how many there are.
// Modality and VOI LUT sequences and palette colour are not supported (the rescale
// slope/intercept and the window centre/width are).
//
// # Grey mapping
//
// Stored values go through the modality rescale (slope and intercept, applied only when both
// are present, as dcmtk and pydicom do) and the VOI window
// (the first WindowCenter/WindowWidth pair, with VOILUTFunction LINEAR, LINEAR_EXACT or
// SIGMOID, as PS3.3 C.11.2.1.2 defines them) into image.Gray16 (0..65535). When the dataset has
// no usable window the window spans the minimum to the maximum rescaled value of the frame
// (dcmtk's "min-max window"). The one exception is plain 8-bit data (8 bits stored, unsigned,
// identity rescale, no window): it is returned unchanged as image.Gray, exactly as a JPEG viewer
// would show it, so a JPEG wrapped in DICOM yields the same pixels as the JPEG itself. Colour
// data are always passed through as luma; a window applies to grey data only (PS3.3 C.11.2).
// MONOCHROME1 is inverted last, so bright always means dense, as in MONOCHROME2.
package dicom
