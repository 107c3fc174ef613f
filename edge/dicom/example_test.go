package dicom_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"image"
	"net"

	"github.com/cxr-edge/cxr-edge/edge/dicom"
)

// explicitElement encodes one explicit VR little endian element with a short (16-bit) length.
func explicitElement(group, elem uint16, vr string, value []byte) []byte {
	b := binary.LittleEndian.AppendUint16(nil, group)
	b = binary.LittleEndian.AppendUint16(b, elem)
	b = append(b, vr...)
	if vr == "OB" || vr == "OW" {
		b = append(b, 0, 0)
		b = binary.LittleEndian.AppendUint32(b, uint32(len(value)))
	} else {
		b = binary.LittleEndian.AppendUint16(b, uint16(len(value)))
	}
	return append(b, value...)
}

func us(v uint16) []byte { return binary.LittleEndian.AppendUint16(nil, v) }

// smallRadiograph is a 3×2, 12-bit MONOCHROME1 dataset without preamble or file meta, as an
// old modality might send it. A real file would come from a hot folder or an HTTP upload.
func smallRadiograph() []byte {
	var d []byte
	d = append(d, explicitElement(0x0008, 0x0060, "CS", []byte("CR"))...)
	d = append(d, explicitElement(0x0010, 0x0010, "PN", []byte("DOE^JANE"))...) // never kept
	d = append(d, explicitElement(0x0028, 0x0002, "US", us(1))...)
	d = append(d, explicitElement(0x0028, 0x0004, "CS", []byte("MONOCHROME1 "))...)
	d = append(d, explicitElement(0x0028, 0x0010, "US", us(2))...)
	d = append(d, explicitElement(0x0028, 0x0011, "US", us(3))...)
	d = append(d, explicitElement(0x0028, 0x0100, "US", us(16))...)
	d = append(d, explicitElement(0x0028, 0x0101, "US", us(12))...)
	d = append(d, explicitElement(0x0028, 0x0102, "US", us(11))...)
	d = append(d, explicitElement(0x0028, 0x0103, "US", us(0))...)
	var px []byte
	for _, v := range []uint16{0, 1000, 2000, 3000, 4000, 4095} {
		px = binary.LittleEndian.AppendUint16(px, v)
	}
	return append(d, explicitElement(0x7FE0, 0x0010, "OW", px)...)
}

func ExampleDecode() {
	data := smallRadiograph()
	if !dicom.IsDICOM(data) {
		fmt.Println("not DICOM")
		return
	}
	img, err := dicom.Decode(data, dicom.Options{}) // zero Options: the documented defaults
	switch {
	case errors.Is(err, dicom.ErrUnsupportedTransferSyntax):
		fmt.Println("ask the sender for uncompressed or JPEG baseline:", err)
		return
	case err != nil:
		fmt.Println("rejected:", err)
		return
	}
	in := img.Info
	fmt.Println(in.Modality, in.PhotometricInterpretation, in.Columns, "x", in.Rows, in.TransferSyntaxName)
	fmt.Println("window:", in.WindowSource, in.WindowCenter, in.WindowWidth)
	g := img.Gray.(*image.Gray16)
	// MONOCHROME1: the lowest stored value is the brightest output.
	fmt.Println(g.Gray16At(0, 0).Y, g.Gray16At(2, 1).Y)
	// Output:
	// CR MONOCHROME1 3 x 2 Explicit VR Little Endian
	// window: min-max 2048 4096
	// 65535 0
}

func ExampleKeyedHash() {
	// The daemon generates the key once per fleet (crypto/rand) and keeps it on the device.
	key := []byte("0123456789abcdef0123456789abcdef")
	fmt.Println(dicom.KeyedHash(key, "1.2.3.4"))
	fmt.Println(dicom.KeyedHash(key, "") == "")
	// Output:
	// 72ceb83c11a982108cf5effa99b6e1a9
	// true
}

// A Store SCP that hands every received image to the device's pipeline: here it decodes the
// file and prints its size. Each C-STORE is answered "success" only after the handler
// returned nil. (Not run: it serves until the context ends; see TestStoreSCPWithDcmtk.)
func ExampleServer() {
	srv, err := dicom.NewServer(dicom.ServerOptions{AETitle: "CXR-EDGE", AllowedCallers: []string{"XRAY1"}},
		dicom.StoreFunc(func(_ context.Context, req dicom.StoreRequest) error {
			img, err := dicom.Decode(req.File, dicom.Options{})
			if err != nil {
				return nil // stored, but unreadable: the pipeline records it as such
			}
			fmt.Println(req.CallingAE, img.Info.Rows, img.Info.Columns)
			return nil
		}))
	if err != nil {
		fmt.Println(err)
		return
	}
	ln, err := net.Listen("tcp", "127.0.0.1:11112")
	if err != nil {
		fmt.Println(err)
		return
	}
	_ = srv.Serve(context.Background(), ln)
}
