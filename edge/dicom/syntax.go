package dicom

// Transfer syntax UIDs this package decodes.
const (
	ImplicitVRLittleEndian         = "1.2.840.10008.1.2"
	ExplicitVRLittleEndian         = "1.2.840.10008.1.2.1"
	DeflatedExplicitVRLittleEndian = "1.2.840.10008.1.2.1.99"
	JPEGBaseline8Bit               = "1.2.840.10008.1.2.4.50"
)

// TransferSyntaxName returns the PS3.6 Table A-1 name (current and retired syntaxes, plus a
// few well-known private ones) of a transfer syntax UID, or "unknown transfer syntax", so that a
// refusal tells the operator what the sending device produced.
func TransferSyntaxName(uid string) string {
	switch uid {
	case "1.2.840.10008.1.2":
		return "Implicit VR Little Endian"
	case "1.2.840.10008.1.2.1":
		return "Explicit VR Little Endian"
	case "1.2.840.10008.1.2.1.98":
		return "Encapsulated Uncompressed Explicit VR Little Endian"
	case "1.2.840.10008.1.2.1.99":
		return "Deflated Explicit VR Little Endian"
	case "1.2.840.10008.1.2.2":
		return "Explicit VR Big Endian (retired)"
	case "1.2.840.10008.1.2.4.50":
		return "JPEG Baseline (Process 1)"
	case "1.2.840.10008.1.2.4.51":
		return "JPEG Extended (Process 2 & 4)"
	case "1.2.840.10008.1.2.4.52":
		return "JPEG Extended (Process 3 & 5) (retired)"
	case "1.2.840.10008.1.2.4.53":
		return "JPEG Spectral Selection, Non-Hierarchical (Process 6 & 8) (retired)"
	case "1.2.840.10008.1.2.4.54":
		return "JPEG Spectral Selection, Non-Hierarchical (Process 7 & 9) (retired)"
	case "1.2.840.10008.1.2.4.55":
		return "JPEG Full Progression, Non-Hierarchical (Process 10 & 12) (retired)"
	case "1.2.840.10008.1.2.4.56":
		return "JPEG Full Progression, Non-Hierarchical (Process 11 & 13) (retired)"
	case "1.2.840.10008.1.2.4.57":
		return "JPEG Lossless, Non-Hierarchical (Process 14)"
	case "1.2.840.10008.1.2.4.58":
		return "JPEG Lossless, Non-Hierarchical (Process 15) (retired)"
	case "1.2.840.10008.1.2.4.70":
		return "JPEG Lossless, Non-Hierarchical, First-Order Prediction (Process 14 [Selection Value 1])"
	case "1.2.840.10008.1.2.4.80":
		return "JPEG-LS Lossless"
	case "1.2.840.10008.1.2.4.81":
		return "JPEG-LS Lossy (Near-Lossless)"
	case "1.2.840.10008.1.2.4.90":
		return "JPEG 2000 Image Compression (Lossless Only)"
	case "1.2.840.10008.1.2.4.91":
		return "JPEG 2000 Image Compression"
	case "1.2.840.10008.1.2.4.92":
		return "JPEG 2000 Part 2 Multi-component Image Compression (Lossless Only)"
	case "1.2.840.10008.1.2.4.93":
		return "JPEG 2000 Part 2 Multi-component Image Compression"
	case "1.2.840.10008.1.2.4.94":
		return "JPIP Referenced"
	case "1.2.840.10008.1.2.4.95":
		return "JPIP Referenced Deflate"
	case "1.2.840.10008.1.2.4.100":
		return "MPEG2 Main Profile / Main Level"
	case "1.2.840.10008.1.2.4.101":
		return "MPEG2 Main Profile / High Level"
	case "1.2.840.10008.1.2.4.102":
		return "MPEG-4 AVC/H.264 High Profile / Level 4.1"
	case "1.2.840.10008.1.2.4.103":
		return "MPEG-4 AVC/H.264 BD-compatible High Profile / Level 4.1"
	case "1.2.840.10008.1.2.4.104":
		return "MPEG-4 AVC/H.264 High Profile / Level 4.2 For 2D Video"
	case "1.2.840.10008.1.2.4.105":
		return "MPEG-4 AVC/H.264 High Profile / Level 4.2 For 3D Video"
	case "1.2.840.10008.1.2.4.106":
		return "MPEG-4 AVC/H.264 Stereo High Profile / Level 4.2"
	case "1.2.840.10008.1.2.4.107":
		return "HEVC/H.265 Main Profile / Level 5.1"
	case "1.2.840.10008.1.2.4.108":
		return "HEVC/H.265 Main 10 Profile / Level 5.1"
	case "1.2.840.10008.1.2.4.110":
		return "JPEG XL Lossless"
	case "1.2.840.10008.1.2.4.111":
		return "JPEG XL JPEG Recompression"
	case "1.2.840.10008.1.2.4.112":
		return "JPEG XL"
	case "1.2.840.10008.1.2.4.201":
		return "High-Throughput JPEG 2000 Image Compression (Lossless Only)"
	case "1.2.840.10008.1.2.4.202":
		return "High-Throughput JPEG 2000 with RPCL Options Image Compression (Lossless Only)"
	case "1.2.840.10008.1.2.4.203":
		return "High-Throughput JPEG 2000 Image Compression"
	case "1.2.840.10008.1.2.4.204":
		return "JPIP HTJ2K Referenced"
	case "1.2.840.10008.1.2.4.205":
		return "JPIP HTJ2K Referenced Deflate"
	case "1.2.840.10008.1.2.5":
		return "RLE Lossless"
	case "1.2.840.10008.1.2.6.1":
		return "RFC 2557 MIME encapsulation (retired)"
	case "1.2.840.10008.1.2.6.2":
		return "XML Encoding (retired)"
	case "1.2.840.10008.1.2.7.1":
		return "SMPTE ST 2110-20 Uncompressed Progressive Active Video"
	case "1.2.840.10008.1.2.7.2":
		return "SMPTE ST 2110-20 Uncompressed Interlaced Active Video"
	case "1.2.840.10008.1.2.7.3":
		return "SMPTE ST 2110-30 PCM Digital Audio"
	case "1.2.840.10008.1.20":
		return "Papyrus 3 Implicit VR Little Endian (retired)"
	case "1.2.840.113619.5.2":
		return "GE Private Implicit VR Big Endian"
	case "1.3.46.670589.33.1.4.1":
		return "Philips Private RLE"
	case "1.2.840.10008.1.2.4.100.1":
		return "Fragmentable MPEG2 Main Profile / Main Level"
	}
	return "unknown transfer syntax"
}
