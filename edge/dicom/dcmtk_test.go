package dicom

import (
	"bytes"
	"errors"
	"image"
	"image/jpeg"
	"image/png"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cxr-edge/cxr-edge/edge/testenv"
)

// These tests check the decoder against files written by dcmtk (Debian package dcmtk) and
// against dcmtk's own rendering (dcm2pnm), an independent implementation of the same standard.

func crPath(t testing.TB) string {
	return testenv.SharedPath(t, "data", "dicom", "CR-MONO1-10-chest.dcm")
}

func decodeFile(t testing.TB, path string) (*Image, error) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return Decode(data, Options{})
}

func mustDecodeFile(t testing.TB, path string) *Image {
	t.Helper()
	img, err := decodeFile(t, path)
	if err != nil {
		t.Fatalf("Decode(%s): %v", filepath.Base(path), err)
	}
	return img
}

// copyToTemp copies a (read-only, shared) file into the test's temporary directory.
func copyToTemp(t testing.TB, src string) string {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), filepath.Base(src))
	if err := os.WriteFile(dst, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return dst
}

// dcm2pnm renders path with dcmtk as a PNG (16-bit with "+on2", 8-bit with "+on").
func dcm2pnm(t testing.TB, path string, args ...string) image.Image {
	t.Helper()
	out := filepath.Join(t.TempDir(), "dcmtk.png")
	testenv.DCMTK(t, "dcm2pnm", append(append([]string{"--quiet"}, args...), path, out)...)
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// grey16 returns any grey image's values on the 16-bit scale.
func grey16(img image.Image) []uint16 {
	b := img.Bounds()
	out := make([]uint16, 0, b.Dx()*b.Dy())
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, _, _, _ := img.At(x, y).RGBA()
			out = append(out, uint16(r))
		}
	}
	return out
}

// grey8 returns the luma plane of an 8-bit grey or YCbCr image.
func grey8(t testing.TB, img image.Image) []byte {
	t.Helper()
	b := img.Bounds()
	out := make([]byte, 0, b.Dx()*b.Dy())
	switch m := img.(type) {
	case *image.Gray:
		for y := 0; y < b.Dy(); y++ {
			out = append(out, m.Pix[y*m.Stride:y*m.Stride+b.Dx()]...)
		}
	case *image.YCbCr:
		for y := 0; y < b.Dy(); y++ {
			out = append(out, m.Y[y*m.YStride:y*m.YStride+b.Dx()]...)
		}
	default:
		t.Fatalf("unexpected image type %T", img)
	}
	return out
}

// diff returns the largest and mean absolute difference of two equally long value slices.
func diff[T uint8 | uint16](t testing.TB, got, want []T) (maxAbs int, mean float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d values, want %d", len(got), len(want))
	}
	sum := 0
	for i := range got {
		d := int(got[i]) - int(want[i])
		if d < 0 {
			d = -d
		}
		maxAbs = max(maxAbs, d)
		sum += d
	}
	return maxAbs, float64(sum) / float64(len(got))
}

func meanRegion(g []uint16, w, x0, y0, x1, y1 int) float64 {
	s, n := 0.0, 0
	for y := y0; y < y1; y++ {
		for x := x0; x < x1; x++ {
			s += float64(g[y*w+x])
			n++
		}
	}
	return s / float64(n)
}

func TestRealChestRadiograph(t *testing.T) {
	img := mustDecodeFile(t, crPath(t))
	in := img.Info
	if in.Rows != 440 || in.Columns != 440 || in.PhotometricInterpretation != "MONOCHROME1" || in.BitsAllocated != 16 ||
		in.BitsStored != 10 || in.HighBit != 9 || in.Modality != "CR" || in.BodyPartExamined != "CHEST" || in.ViewPosition != "PA" ||
		in.TransferSyntax != ImplicitVRLittleEndian || in.WindowCenter != 550 || in.WindowWidth != 1024 || in.WindowSource != WindowFromDataset ||
		in.StudyInstanceUID != "1.2.392.200036.9125.0.199302241758.16" || in.SOPInstanceUID != "1.2.392.200036.9125.0.19950720112207" {
		t.Fatalf("info %+v", in)
	}
	g := gray16(t, img.Gray)
	// Anatomy: air-filled lungs must come out darker than the mediastinum and the spine
	// between them, and the air outside the shoulders dark; a missing MONOCHROME1 inversion
	// turns all of these around.
	rightLung := meanRegion(g, 440, 70, 150, 150, 280)
	leftLung := meanRegion(g, 440, 290, 150, 370, 280)
	mediastinum := meanRegion(g, 440, 195, 150, 245, 280)
	t.Logf("mean grey: right lung %.0f, mediastinum %.0f, left lung %.0f", rightLung, mediastinum, leftLung)
	if !(rightLung < mediastinum-5000 && leftLung < mediastinum-5000) {
		t.Fatalf("lungs (%.0f, %.0f) are not clearly darker than the mediastinum (%.0f)", rightLung, leftLung, mediastinum)
	}
}

// The strongest check: the real file and variants of it edited with dcmodify must render as
// dcmtk renders them. dcmtk evaluates the same PS3.3 formulas in floating point and writes
// 16-bit PNG; its output LUT rounds at a different point than ours, so single values may
// differ by one level of 65535 (0.0015 %) — nothing an 8-bit model input can see.
// Two dcmtk 3.6.7 limits shape the table: it keeps rescaled values as integers (so slopes and
// intercepts here are integers; we keep fractions exactly), and it ignores LINEAR_EXACT
// (tested against hand-computed values in TestLinearExactPoints instead).
func TestMatchesDcmtkRendering(t *testing.T) {
	testenv.LookPath(t, "dcmodify")
	cases := []struct {
		name    string
		modify  []string // dcmodify arguments
		conv    []string // dcmconv arguments (re-encoding)
		render  []string // dcm2pnm VOI arguments
		source  string
		maxDiff int
	}{
		{"original", nil, nil, []string{"+Wi", "1"}, WindowFromDataset, 1},
		{"monochrome2", []string{"-m", "PhotometricInterpretation=MONOCHROME2"}, nil, []string{"+Wi", "1"}, WindowFromDataset, 1},
		{"multi-valued window", []string{"-m", `WindowCenter=500\300`, "-m", `WindowWidth=700\100`}, nil, []string{"+Wi", "1"}, WindowFromDataset, 1},
		{"no window: min-max", []string{"-e", "WindowCenter", "-e", "WindowWidth"}, nil, []string{"+Wm"}, WindowMinMax, 1},
		{"rescale", []string{"-i", "RescaleSlope=2", "-i", "RescaleIntercept=-1024", "-m", "WindowCenter=300", "-m", "WindowWidth=2000"}, nil, []string{"+Wi", "1"}, WindowFromDataset, 1},
		{"negative slope min-max", []string{"-i", "RescaleSlope=-1", "-i", "RescaleIntercept=100", "-e", "WindowCenter", "-e", "WindowWidth"}, nil, []string{"+Wm"}, WindowMinMax, 1},
		{"signed", []string{"-m", "PixelRepresentation=1", "-e", "WindowCenter", "-e", "WindowWidth"}, nil, []string{"+Wm"}, WindowMinMax, 1},
		{"explicit VR 16-bit Part 10", nil, []string{"+te", "+F"}, []string{"+Wi", "1"}, WindowFromDataset, 1},
		{"intercept without slope is ignored", []string{"-i", "RescaleIntercept=7"}, nil, []string{"+Wi", "1"}, WindowFromDataset, 1},
		{"explicit VR 16-bit dataset only", []string{"-i", "RescaleIntercept=7", "-i", "RescaleSlope=1"}, []string{"+te", "-F"}, []string{"+Wi", "1"}, WindowFromDataset, 1},
		{"undefined-length sequence before pixels", []string{"-i", "(0008,1140)[0].(0008,1150)=1.2.3", "-i", "(0008,1140)[1].(0008,1155)=1.2.3.4"}, []string{"+te", "-e"}, []string{"+Wi", "1"}, WindowFromDataset, 1},
		{"sigmoid", []string{"-i", "VOILUTFunction=SIGMOID"}, nil, []string{"+Wi", "1"}, WindowFromDataset, 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := copyToTemp(t, crPath(t))
			if c.modify != nil {
				testenv.DCMTK(t, "dcmodify", append([]string{"-nb", "-q"}, append(c.modify, path)...)...)
			}
			if c.conv != nil {
				testenv.DCMTK(t, "dcmconv", append([]string{"-q"}, append(c.conv, path, path+".conv")...)...)
				path += ".conv"
			}
			img := mustDecodeFile(t, path)
			if img.Info.WindowSource != c.source {
				t.Fatalf("window source %s, want %s", img.Info.WindowSource, c.source)
			}
			want := grey16(dcm2pnm(t, path, append([]string{"+on2"}, c.render...)...))
			maxAbs, mean := diff(t, gray16(t, img.Gray), want)
			t.Logf("against dcm2pnm %s: max |diff| %d, mean %.4f (window %g/%g)", strings.Join(c.render, " "), maxAbs, mean, img.Info.WindowCenter, img.Info.WindowWidth)
			if maxAbs > c.maxDiff {
				t.Fatalf("max |diff| %d > %d", maxAbs, c.maxDiff)
			}
		})
	}
}

// jpegSources are real JPEGs of the dataset: a small colour-encoded (YCbCr) one and a
// full-resolution grey one.
func jpegSources(t testing.TB) map[string]string {
	return map[string]string{
		"ycbcr-224": testenv.SharedPath(t, "data", "chest_xray", "test", "NORMAL", "IM-0001-0001.jpeg"),
		"grey-full": testenv.SharedPath(t, "data", "fullres", "NORMAL", "IM-0149-0001.jpeg"),
	}
}

func decodeJPEGFile(t testing.TB, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	img, err := jpeg.Decode(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	return grey8(t, img)
}

// Files written by img2dcm, dcmdjpeg and dcmconv in every layout decode to the same pixels.
func TestDcmtkWrittenFiles(t *testing.T) {
	for name, src := range jpegSources(t) {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			p := func(n string) string { return filepath.Join(dir, n) }
			ref := decodeJPEGFile(t, src)

			// Encapsulated JPEG Baseline: decoded by image/jpeg, so identical to the source.
			testenv.DCMTK(t, "img2dcm", "-q", src, p("jpeg.dcm"))
			enc := mustDecodeFile(t, p("jpeg.dcm"))
			if enc.Info.TransferSyntax != JPEGBaseline8Bit || !bytes.Equal(grayPix(t, enc.Gray), ref) {
				t.Fatalf("encapsulated JPEG (%s) differs from the source JPEG", enc.Info.TransferSyntax)
			}

			// Uncompressed by dcmtk's libjpeg: its integer IDCT (and, for YCbCr, colour
			// conversion and chroma upsampling) rounds differently from Go's, so single values
			// may differ by a level or two (measured: max 1, mean 0.02). The uncompressed file
			// is compared exactly with dcmtk's own rendering below.
			testenv.DCMTK(t, "dcmdjpeg", "-q", p("jpeg.dcm"), p("native.dcm"))
			native := mustDecodeFile(t, p("native.dcm"))
			nativePix := grayPix(t, native.Gray)
			maxAbs, mean := diff(t, nativePix, ref)
			t.Logf("dcmdjpeg vs image/jpeg: max |diff| %d, mean %.3f (8-bit levels)", maxAbs, mean)
			if native.Info.TransferSyntax != ExplicitVRLittleEndian || maxAbs > 2 || mean > 0.1 {
				t.Fatalf("%s: max |diff| %d, mean %.3f from the source JPEG", native.Info.TransferSyntax, maxAbs, mean)
			}
			if native.Info.SamplesPerPixel == 1 {
				// dcm2pnm without VOI windowing maps 8 stored bits 1:1 to its 8-bit output.
				if want := grey8(t, dcm2pnm(t, p("native.dcm"), "+on")); !bytes.Equal(nativePix, want) {
					t.Fatal("uncompressed grey pixels differ from dcm2pnm's rendering")
				}
			}

			// Add nested sequences so that undefined-length writing (-e) has items to write.
			testenv.DCMTK(t, "dcmodify", "-nb", "-q",
				"-i", "(0008,1140)[0].(0008,1150)=1.2.840.10008.5.1.4.1.1.1",
				"-i", "(0008,1140)[0].(0008,1155)=1.2.3.4",
				"-i", "(0040,0275)[0].(0040,0008)[0].(0008,0100)=CODE",
				"-i", "(0040,0275)[0].(0040,0008)[1].(0008,0102)=99TEST",
				p("native.dcm"))
			variants := []struct {
				name string
				args []string
				ts   string
			}{
				{"implicit", []string{"+ti"}, ImplicitVRLittleEndian},
				{"explicit dataset only (no preamble, no meta)", []string{"-F"}, ExplicitVRLittleEndian},
				{"implicit dataset only (ACR-NEMA style)", []string{"+ti", "-F"}, ImplicitVRLittleEndian},
				{"deflated", []string{"+td"}, DeflatedExplicitVRLittleEndian},
				{"undefined lengths", []string{"-e"}, ExplicitVRLittleEndian},
				{"implicit undefined lengths", []string{"+ti", "-e"}, ImplicitVRLittleEndian},
				{"group lengths", []string{"+g"}, ExplicitVRLittleEndian},
			}
			for i, v := range variants {
				out := p("variant" + string(rune('a'+i)) + ".dcm")
				testenv.DCMTK(t, "dcmconv", append(append([]string{"-q"}, v.args...), p("native.dcm"), out)...)
				img := mustDecodeFile(t, out)
				if !bytes.Equal(grayPix(t, img.Gray), nativePix) || img.Info.TransferSyntax != v.ts || img.Info.Rows != native.Info.Rows {
					t.Errorf("%s (dcmconv %s): %s, pixels differ from the explicit VR file", v.name, strings.Join(v.args, " "), img.Info.TransferSyntax)
				}
			}

			// Syntaxes that are refused, with a message naming them.
			testenv.DCMTK(t, "dcmconv", "-q", "+tb", p("native.dcm"), p("big.dcm"))
			testenv.DCMTK(t, "dcmcrle", "-q", p("native.dcm"), p("rle.dcm"))
			for file, name := range map[string]string{"big.dcm": "Explicit VR Big Endian", "rle.dcm": "RLE Lossless"} {
				_, err := decodeFile(t, p(file))
				if !errors.Is(err, ErrUnsupportedTransferSyntax) || !strings.Contains(err.Error(), name) {
					t.Errorf("%s: %v, want ErrUnsupportedTransferSyntax naming %q", file, err, name)
				}
			}

			if native.Info.SamplesPerPixel == 1 {
				// MONOCHROME1 set by dcmodify inverts the 8-bit image exactly.
				testenv.DCMTK(t, "dcmodify", "-nb", "-q", "-m", "PhotometricInterpretation=MONOCHROME1", p("native.dcm"))
				inv := grayPix(t, mustDecodeFile(t, p("native.dcm")).Gray)
				for i := range inv {
					if int(inv[i])+int(nativePix[i]) != 255 {
						t.Fatalf("MONOCHROME1 pixel %d = %d, want 255-%d", i, inv[i], nativePix[i])
					}
				}
			}
		})
	}
}

// Patient data written by dcmodify (top level and inside a sequence) is nowhere in the result.
func TestDcmtkPrivacy(t *testing.T) {
	secrets := map[string]string{
		"PatientName":      "MUSTERMANN^ERIKA",
		"PatientID":        "PAT-0815-XYZ",
		"PatientBirthDate": "19631224",
		"StudyDate":        "20260101",
		"AccessionNumber":  "ACC-777-SECRET",
		"InstitutionName":  "Clinic Of Somewhere",
	}
	args := []string{"-nb", "-q"}
	for k, v := range secrets {
		args = append(args, "-i", k+"="+v)
	}
	args = append(args, "-i", "(0010,1002)[0].(0010,0020)=OTHER-ID-4242")
	for _, kind := range []string{"jpeg", "native"} {
		t.Run(kind, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "x.dcm")
			testenv.DCMTK(t, "img2dcm", "-q", jpegSources(t)["grey-full"], path)
			if kind == "native" {
				testenv.DCMTK(t, "dcmdjpeg", "-q", path, path+".n")
				path += ".n"
			}
			testenv.DCMTK(t, "dcmodify", append(slices.Clone(args), path)...)
			dump := testenv.DCMTK(t, "dcmdump", path)
			if !strings.Contains(dump, secrets["PatientName"]) || !strings.Contains(dump, "OTHER-ID-4242") {
				t.Fatalf("dcmodify did not write the patient data:\n%s", dump)
			}
			img := mustDecodeFile(t, path)
			all, _ := renderAll(t, img)
			for k, v := range secrets {
				if strings.Contains(all, v) {
					t.Errorf("%s %q found in the decoded value", k, v)
				}
			}
			if strings.Contains(all, "OTHER-ID-4242") {
				t.Error("id from inside a sequence found in the decoded value")
			}
		})
	}
}

func TestRealFileTruncatedAndCorrupted(t *testing.T) {
	data, err := os.ReadFile(crPath(t))
	if err != nil {
		t.Fatal(err)
	}
	pixelStart := bytes.Index(data, []byte{0xE0, 0x7F, 0x10, 0x00})
	for cut := 0; cut < len(data); cut += 1 + cut/16 {
		_, err := Decode(data[:cut], Options{})
		switch {
		case err == nil:
			t.Fatalf("cut at %d decoded", cut)
		case errors.Is(err, ErrTruncated), errors.Is(err, ErrNoPixelData) && cut <= pixelStart, errors.Is(err, ErrNotDICOM) && cut < 12:
		default:
			t.Fatalf("cut at %d: %v", cut, err)
		}
	}
	// Flips in the header (the first 1 kB) must never panic and any error must be classified.
	for i := 0; i < pixelStart; i++ {
		x := []byte{0x01, 0x80, 0xFF}[i%3] // low bit, high bit, all bits, in turn
		mut := slices.Clone(data)
		mut[i] ^= x
		if _, err := Decode(mut, Options{}); err != nil && !classified(err) {
			t.Fatalf("flip %#x at %d: unclassified %v", x, i, err)
		}
	}
}

func BenchmarkDecodeRealCR(b *testing.B) {
	data, err := os.ReadFile(crPath(b))
	if err != nil {
		b.Fatal(err)
	}
	benchDecode(b, data)
}

// benchDecode measures Decode of one file, reporting its size as bytes per operation.
func benchDecode(b *testing.B, data []byte) {
	b.Helper()
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Decode(data, Options{}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPeerPNGDecodeCR decodes the same 440×440 16-bit image as PNG with image/png: the
// peer against which BenchmarkDecodeRealCR is read as a ratio.
func BenchmarkPeerPNGDecodeCR(b *testing.B) {
	data, err := os.ReadFile(crPath(b))
	if err != nil {
		b.Fatal(err)
	}
	img, err := Decode(data, Options{})
	if err != nil {
		b.Fatal(err)
	}
	var buf bytes.Buffer
	if err := (&png.Encoder{CompressionLevel: png.NoCompression}).Encode(&buf, img.Gray); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(buf.Len()))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := png.Decode(bytes.NewReader(buf.Bytes())); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeFullresNative decodes a full-resolution (1542×1152) uncompressed DICOM made by
// img2dcm+dcmdjpeg; BenchmarkPeerJPEGDecodeFullres decodes the source JPEG with image/jpeg, the
// path the device takes for JPEG uploads.
func BenchmarkDecodeFullresNative(b *testing.B) {
	dir := b.TempDir()
	src := jpegSources(b)["grey-full"]
	testenv.DCMTK(b, "img2dcm", "-q", src, filepath.Join(dir, "j.dcm"))
	testenv.DCMTK(b, "dcmdjpeg", "-q", filepath.Join(dir, "j.dcm"), filepath.Join(dir, "n.dcm"))
	data, err := os.ReadFile(filepath.Join(dir, "n.dcm"))
	if err != nil {
		b.Fatal(err)
	}
	benchDecode(b, data)
}

func BenchmarkPeerJPEGDecodeFullres(b *testing.B) {
	data, err := os.ReadFile(jpegSources(b)["grey-full"])
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := jpeg.Decode(bytes.NewReader(data)); err != nil {
			b.Fatal(err)
		}
	}
}
