package quantize

import (
	"math"
	"math/rand/v2"

	"github.com/cxr-edge/cxr-edge/edge/imaging"
)

// Augment describes the random transformations applied to training images. They model how
// chest films of the same disease differ: patient positioning (small rotations, shifts,
// distance to the detector = zoom) and exposure (brightness, contrast). No flips: the heart
// is on the left, and a mirrored chest is not a radiograph the device will see.
type Augment struct {
	RotateDeg  float64 // uniform in ±RotateDeg degrees
	Shift      float64 // uniform in ±Shift of the image size, per axis
	Zoom       float64 // scale uniform in [1−Zoom, 1+Zoom]
	Brightness float64 // added, uniform in ±Brightness (image range is 0..1)
	Contrast   float64 // around the image mean, factor uniform in [1−Contrast, 1+Contrast]
	// Gamma: x → x^γ with γ uniform in [1−Gamma, 1+Gamma] (detector response curves differ).
	// 0 draws no random number, so recipes without it keep their random stream.
	Gamma float64
	// Blur: probability of a 3×3 (1-2-1) blur (sharper or softer detectors and resampling).
	Blur float64
	// Margin: probability of black margins, each side independently (p = ½) up to 10% of the
	// image wide. In the training split NORMAL films carry far more black border outside the
	// collimated field than PNEUMONIA films (a median 7.5% of pixels ≤ 1 against 0.8%; that
	// fraction alone separates the classes with AUC 0.76), a shortcut that says nothing about
	// the lungs; margins on both classes take it away. 0 draws no random number.
	Margin float64
	// ZoomIn: an extra magnification uniform in [1, 1+ZoomIn] on every image. In the training
	// split NORMAL films show a wider field (shoulders, neck, abdomen) than PNEUMONIA films, so
	// a network learns "lungs fill the frame → pneumonia"; magnified validation films show it
	// (at 1.3× the session-2 model flags 30% of validation normals instead of 1.4%). Magnifying
	// both classes takes that cue away. 0 draws no random number.
	ZoomIn float64
	// Aspect: the film stretched by a factor log-uniform in [1/(1+Aspect), 1+Aspect], down
	// when above 1, across when below (magnifying one axis, so no border is invented). Every
	// film was squashed to a square, so its anatomy is compressed across by its original
	// width/height, a median 1.5 for PNEUMONIA originals against 1.2 for NORMAL ones (the
	// training originals whose sizes the dataset lists); without this a network calls a normal
	// film from a wider detector pneumonia (the stress test's aspect rows). 0 draws no random
	// number.
	Aspect float64
	// NormalAspect and PneumoniaAspect: NORMAL films are stretched down by NormalAspect and
	// PNEUMONIA films across by PneumoniaAspect, on top of Aspect (0 or 1: not at all). Aspect
	// alone is drawn alike for both classes, so the classes' median compression stays 1.2 and
	// 1.5 and a network can still lean on the difference; stretches whose product is their
	// ratio (1.24) give both classes the same compression, so shape says nothing about the
	// label. √1.24 ≈ 1.114 each meets in the middle, so neither class is moved far from the
	// films the device will see. Draw no random number.
	NormalAspect, PneumoniaAspect float64
	// Erase: probability of replacing one random rectangle (2–20% of the image, width/height
	// log-uniform in 1/3–3) by the image's mean grey, so that no single region (a marker, a
	// corner, the heart border) can decide a film alone. 0 draws no random number.
	Erase float64
	// Mixup: the trainer blends each training film with another drawn at random, pixels, label
	// and loss weight alike, by λ ~ Beta(Mixup, Mixup) (Zhang et al., ICLR 2018); the network
	// then scores blends in between, which tends to make it less sure of films unlike its
	// training ones. Blended pixels are left off the 8-bit grid: a blend is no device image
	// anyway. 0 (the default): off, and no random number is drawn.
	Mixup float64
	// Renormalize: the trainer puts every augmented film through the model's grey-level steps
	// again (imaging.Normalize: the window), as the device does with every film it receives;
	// otherwise a magnified film keeps the grey range its black border gave it and a
	// low-contrast one stays low-contrast, films the device never produces. Always on for an
	// equalized model (Arch.Equalize). Draws no random number.
	Renormalize bool
}

// DefaultAugment: ±10°, ±8% shift, ±10% zoom, ±0.08 brightness, ±15% contrast.
func DefaultAugment() Augment {
	return Augment{RotateDeg: 10, Shift: 0.08, Zoom: 0.10, Brightness: 0.08, Contrast: 0.15}
}

// Scaled returns a with every range multiplied by f (0 disables augmentation), the class
// stretches raised to the power f.
func (a Augment) Scaled(f float64) Augment {
	pow := func(s float64) float64 {
		if s > 0 {
			return math.Pow(s, f)
		}
		return s
	}
	return Augment{RotateDeg: a.RotateDeg * f, Shift: a.Shift * f, Zoom: a.Zoom * f, Brightness: a.Brightness * f,
		Contrast: a.Contrast * f, Gamma: a.Gamma * f, Blur: min(a.Blur*f, 1), Margin: min(a.Margin*f, 1), ZoomIn: a.ZoomIn * f,
		Aspect: a.Aspect * f, NormalAspect: pow(a.NormalAspect), PneumoniaAspect: pow(a.PneumoniaAspect),
		Erase: min(a.Erase*f, 1), Mixup: a.Mixup * f, Renormalize: a.Renormalize}
}

// toInput writes the network input x = p/255 of a grey image (exactly the values the int8
// model receives, see imaging.InputSpec).
func toInput(grey []uint8, dst []float32) {
	for i, p := range grey {
		dst[i] = float32(p) / 255
	}
}

// renormalize puts a network input on the 8-bit grid through spec's grey-level steps
// (imaging.Normalize) in place.
func renormalize(x []float32, spec imaging.InputSpec) {
	grey := make([]uint8, len(x))
	for i, v := range x {
		grey[i] = uint8(math.Round(float64(min(max(v, 0), 1)) * 255))
	}
	imaging.Normalize(grey, spec)
	toInput(grey, x)
}

// apply writes an augmented copy of the size×size grey image (a NORMAL film if normal) into
// dst as network input. The warp samples bilinearly with edges repeated; values stay in [0, 1]
// like real inputs.
func (a Augment) apply(grey []uint8, size int, normal bool, rng *rand.Rand, dst []float32) {
	u := func(r float64) float64 { return (2*rng.Float64() - 1) * r }
	theta := u(a.RotateDeg) * math.Pi / 180
	zoom := 1 + u(a.Zoom)
	tx, ty := u(a.Shift)*float64(size), u(a.Shift)*float64(size)
	bright, contrast := u(a.Brightness), 1+u(a.Contrast)
	if a.ZoomIn > 0 {
		zoom *= 1 + rng.Float64()*a.ZoomIn
	}
	zx, zy := 1.0, 1.0 // extra magnification across and down
	var logA float64   // log of the stretch down
	switch {
	case normal && a.NormalAspect > 0:
		logA = math.Log(a.NormalAspect)
	case !normal && a.PneumoniaAspect > 0:
		logA = -math.Log(a.PneumoniaAspect)
	}
	if a.Aspect > 0 {
		logA += u(math.Log1p(a.Aspect))
	}
	if logA != 0 {
		zx, zy = stretch(math.Exp(logA))
	}
	// Inverse map: output pixel → source position.
	c := float64(size-1) / 2
	cos, sin := math.Cos(theta)/zoom, math.Sin(theta)/zoom
	last := size - 1
	var sum float64
	for y := 0; y < size; y++ {
		for x := 0; x < size; x++ {
			dx, dy := (float64(x)-c-tx)/zx, (float64(y)-c-ty)/zy
			sx := cos*dx + sin*dy + c
			sy := -sin*dx + cos*dy + c
			sx = min(max(sx, 0), float64(last))
			sy = min(max(sy, 0), float64(last))
			x0, y0 := int(sx), int(sy)
			x1, y1 := min(x0+1, last), min(y0+1, last)
			fx, fy := float32(sx-float64(x0)), float32(sy-float64(y0))
			p00, p01 := float32(grey[y0*size+x0]), float32(grey[y0*size+x1])
			p10, p11 := float32(grey[y1*size+x0]), float32(grey[y1*size+x1])
			v := (p00*(1-fx)+p01*fx)*(1-fy) + (p10*(1-fx)+p11*fx)*fy
			dst[y*size+x] = v / 255
			sum += float64(v / 255)
		}
	}
	if a.Blur > 0 && rng.Float64() < a.Blur {
		sum = blur3(dst[:size*size], size)
	}
	gamma := 1.0
	if a.Gamma > 0 {
		gamma = 1 + u(a.Gamma)
	}
	mean := float32(sum / float64(size*size))
	for i, v := range dst[:size*size] {
		if gamma != 1 {
			v = float32(math.Pow(float64(v), gamma))
		}
		v = (v-mean)*float32(contrast) + mean + float32(bright)
		// Quantise to the 8-bit grid the device sees, so training never sees values the int8
		// input cannot represent.
		dst[i] = float32(math.Round(float64(min(max(v, 0), 1)*255))) / 255
	}
	if a.Margin > 0 && rng.Float64() < a.Margin {
		blackMargins(dst[:size*size], size, rng)
	}
	if a.Erase > 0 && rng.Float64() < a.Erase {
		eraseRect(dst[:size*size], size, rng)
	}
}

// eraseRect fills a random rectangle of 2–20% of the size×size image, width/height log-uniform
// in 1/3–3, with the image's mean (on the 8-bit grid, like every input).
func eraseRect(img []float32, size int, rng *rand.Rand) {
	area := (0.02 + 0.18*rng.Float64()) * float64(size*size)
	ratio := math.Exp((2*rng.Float64() - 1) * math.Log(3))
	w := min(max(int(math.Round(math.Sqrt(area*ratio))), 1), size)
	h := min(max(int(math.Round(math.Sqrt(area/ratio))), 1), size)
	x0, y0 := rng.IntN(size-w+1), rng.IntN(size-h+1)
	var sum float64
	for _, v := range img {
		sum += float64(v)
	}
	mean := float32(math.Round(sum/float64(len(img))*255)) / 255
	for y := y0; y < y0+h; y++ {
		row := img[y*size+x0 : y*size+x0+w]
		for i := range row {
			row[i] = mean
		}
	}
}

// blackMargins blacks out a band of up to 10% of the size along each side with probability ½.
func blackMargins(img []float32, size int, rng *rand.Rand) {
	var w [4]int // top, bottom, left, right
	for i := range w {
		if rng.Float64() < 0.5 {
			w[i] = int(rng.Float64() * 0.1 * float64(size))
		}
	}
	for y := 0; y < size; y++ {
		for x := 0; x < size; x++ {
			if y < w[0] || y >= size-w[1] || x < w[2] || x >= size-w[3] {
				img[y*size+x] = 0
			}
		}
	}
}

// blur3 blurs the size×size image in place with the separable 1-2-1 kernel (edges repeated)
// and returns the new pixel sum.
func blur3(img []float32, size int) float64 {
	tmp := make([]float32, len(img))
	last := size - 1
	for y := 0; y < size; y++ {
		row := img[y*size : (y+1)*size]
		for x := 0; x < size; x++ {
			tmp[y*size+x] = (row[max(x-1, 0)] + 2*row[x] + row[min(x+1, last)]) / 4
		}
	}
	var sum float64
	for y := 0; y < size; y++ {
		up, down := max(y-1, 0), min(y+1, last)
		for x := 0; x < size; x++ {
			v := (tmp[up*size+x] + 2*tmp[y*size+x] + tmp[down*size+x]) / 4
			img[y*size+x] = v
			sum += float64(v)
		}
	}
	return sum
}
