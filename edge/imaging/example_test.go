package imaging_test

import (
	"bytes"
	"fmt"
	"image"
	"image/png"

	"github.com/cxr-edge/cxr-edge/edge/imaging"
)

// The device's path from an encoded file to the int8 input tensor of the model.
func Example() {
	// A tiny 4×2 grey PNG stands in for an X-ray file.
	src := image.NewGray(image.Rect(0, 0, 4, 2))
	copy(src.Pix, []uint8{0, 64, 128, 255, 0, 64, 128, 255})
	var file bytes.Buffer
	_ = png.Encode(&file, src)

	img, info, err := imaging.Decode(&file, imaging.Options{}) // default limits
	if err != nil {
		fmt.Println(err)
		return
	}
	spec := imaging.ModelInput(2) // 2×2×1 int8, scale 1/255, zero point -128
	spec.Width = 4                // keep the 4 columns so the mapping is visible
	tensor := make([]byte, spec.Bytes())
	if err := imaging.Preprocess(img, spec, tensor); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(info.Format, info.Width, info.Height)
	for _, q := range tensor[:4] {
		fmt.Print(int8(q), " ") // q = p - 128
	}
	fmt.Println()
	// Output:
	// png 4 2
	// -128 -64 0 127
}
