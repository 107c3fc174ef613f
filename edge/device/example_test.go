package device_test

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"image/jpeg"
	"os"

	"github.com/cxr-edge/cxr-edge/edge/device"
	"github.com/cxr-edge/cxr-edge/edge/intake"
)

// Load reads defaults, the YAML file, CXR_* variables and flags, and validates every key.
func ExampleLoad() {
	env := map[string]string{"CXR_DEVICE_SITE": "clinic-7", "CXR_MODEL_THRESHOLD": "0.4"}
	cfg, err := device.Load(device.LoadOptions{
		Dirs:     []string{os.TempDir()},
		Env:      func(k string) (string, bool) { v, ok := env[k]; return v, ok },
		Hostname: func() (string, error) { return "xray.cart-2.local", nil },
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(cfg.Device.ID, cfg.Device.Site, *cfg.Model.Threshold, cfg.Intake.HTTPListen)

	env["CXR_INDICATOR_KIND"] = "lcd"
	_, err = device.Load(device.LoadOptions{Dirs: []string{os.TempDir()}, Env: func(k string) (string, bool) { v, ok := env[k]; return v, ok }})
	fmt.Println(err)
	// Output:
	// xray-cart-2-local clinic-7 0.4 127.0.0.1:8080
	// invalid configuration: indicator.kind = "lcd": want gpio, console or none
}

// A pipeline without a store scores an image once (what `cxr-edge score` does); the daemon
// passes its store, indicator and publisher too.
func ExamplePipeline_Process() {
	model, err := device.LoadModel(device.ModelConfig{Path: "model.tflite", Output: "auto", PositiveIndex: 1})
	if err != nil {
		fmt.Println(err)
		return
	}
	p, err := device.NewPipeline(device.PipelineOptions{Scorer: model})
	if err != nil {
		fmt.Println(err)
		return
	}
	data, _ := os.ReadFile("chest.jpeg")
	res, err := p.Process(context.Background(), intake.Input{Source: "cli", Data: data})
	fmt.Println(res.Label, res.Score, err)
}

func ExampleMakeThumbnail() {
	// A decoded 1600×1200 X-ray becomes a grey JPEG for the screen, at most ThumbnailSize wide.
	img := image.NewGray(image.Rect(0, 0, 1600, 1200))
	data, err := device.MakeThumbnail(img, device.ThumbnailSize)
	if err != nil {
		panic(err)
	}
	cfg, _ := jpeg.DecodeConfig(bytes.NewReader(data))
	fmt.Printf("%dx%d\n", cfg.Width, cfg.Height)
	// Output: 320x240
}

// An empty model.path loads the model embedded in the binary; model.sha256 pins it too.
func ExampleLoadModel_embedded() {
	model, err := device.LoadModel(device.ModelConfig{Output: "auto", PositiveIndex: 1})
	if err != nil {
		fmt.Println(err)
		return
	}
	ref := model.Ref()
	fmt.Println(ref.Name, len(ref.SHA256), model.Threshold() > 0 && model.Threshold() < 1)
	// Output: cxr-pneumonia-int8 (embedded) 64 true
}
