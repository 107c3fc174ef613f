package quantize

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"

	"github.com/cxr-edge/cxr-edge/edge/imaging"
)

// Sample is one labelled image of the dataset.
type Sample struct {
	Path    string
	Label   uint8  // 1 = PNEUMONIA, 0 = NORMAL
	Patient string // patient (PNEUMONIA) or study (NORMAL) id, the unit of the split
	Viral   bool   // a viral pneumonia film (its file name says so); set by ListSplit
	Grey    []uint8
}

// Classes are the dataset's folder names, indexed by label.
var Classes = [2]string{"NORMAL", "PNEUMONIA"}

// ErrDataset: the data folder does not have the Kaggle layout, or a file name carries no
// patient id.
var ErrDataset = errors.New("quantize: bad dataset")

var (
	personRE = regexp.MustCompile(`^person(\d+)_(bacteria|virus)_\d+(?:_\d+)?$`)
	studyRE  = regexp.MustCompile(`^((?:NORMAL2-)?IM-\d+)(?:-\d+)+$`)
)

// PatientID returns the patient of a file: person1000_bacteria_2931 (and person447_virus_921_1)
// → "person1000"; IM-0115-0001 (and IM-0429-0001-0002) → "IM-0115"; NORMAL2-IM-1427-0001 →
// "NORMAL2-IM-1427" (NORMAL file names carry a study id, the finest grouping the names give).
func PatientID(file string) (string, error) {
	base := strings.TrimSuffix(filepath.Base(file), filepath.Ext(file))
	if m := personRE.FindStringSubmatch(base); m != nil {
		return "person" + m[1], nil
	}
	if m := studyRE.FindStringSubmatch(base); m != nil {
		return m[1], nil
	}
	return "", fmt.Errorf("%w: no patient id in file name %q", ErrDataset, filepath.Base(file))
}

// viralFile reports whether a file name is a viral pneumonia film's (person…_virus_…).
func viralFile(file string) bool {
	m := personRE.FindStringSubmatch(strings.TrimSuffix(filepath.Base(file), filepath.Ext(file)))
	return m != nil && m[2] == "virus"
}

// ListSplit lists dir/split/{NORMAL,PNEUMONIA}/*.{jpeg,jpg,png}, sorted by path.
func ListSplit(dir, split string) ([]Sample, error) {
	var out []Sample
	for label, class := range Classes {
		d := filepath.Join(dir, split, class)
		ents, err := os.ReadDir(d)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrDataset, err)
		}
		for _, e := range ents {
			ext := strings.ToLower(filepath.Ext(e.Name()))
			if e.IsDir() || (ext != ".jpeg" && ext != ".jpg" && ext != ".png") {
				continue
			}
			pid, err := PatientID(e.Name())
			if err != nil {
				return nil, err
			}
			out = append(out, Sample{Path: filepath.Join(d, e.Name()), Label: uint8(label), Patient: class + "/" + pid,
				Viral: label == 1 && viralFile(e.Name())})
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: no images in %s", ErrDataset, filepath.Join(dir, split))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out, nil
}

// trainValSplit lists the official train split of the dataset at data and divides it by patient
// (or, with byBatch, by acquisition batch) with seed; the official val images join validation
// (16 images are too few to choose on alone). Training, ensemble export and the stress test
// all use it, so a model's validation images are the same everywhere.
func trainValSplit(data string, frac float64, seed uint64, byBatch bool) (train, val []Sample, err error) {
	all, err := ListSplit(data, "train")
	if err != nil {
		return nil, nil, err
	}
	if byBatch {
		train, val = SplitByBatch(all, frac, seed)
	} else {
		train, val = SplitByPatient(all, frac, seed)
	}
	if off, err := ListSplit(data, "val"); err == nil {
		val = append(val, off...)
	}
	return train, val, nil
}

// SplitByPatient moves a fraction of the patients of each class to validation, chosen with
// seed: no patient has images on both sides, and both sides keep the class ratio.
func SplitByPatient(samples []Sample, frac float64, seed uint64) (train, val []Sample) {
	var patients [2][]string
	seen := map[string]bool{}
	for _, s := range samples {
		if !seen[s.Patient] {
			seen[s.Patient] = true
			patients[s.Label] = append(patients[s.Label], s.Patient)
		}
	}
	rng := rand.New(rand.NewPCG(seed, 0x5eed5))
	toVal := map[string]bool{}
	for _, ps := range patients {
		sort.Strings(ps)
		rng.Shuffle(len(ps), func(i, j int) { ps[i], ps[j] = ps[j], ps[i] })
		for _, p := range ps[:int(math.Round(frac*float64(len(ps))))] {
			toVal[p] = true
		}
	}
	for _, s := range samples {
		if toVal[s.Patient] {
			val = append(val, s)
		} else {
			train = append(train, s)
		}
	}
	return train, val
}

// HoldoutBatch is the NORMAL acquisition batch SplitByBatch holds out: studies named IM-*
// (the other batch is NORMAL2-IM-*).
const HoldoutBatch = "NORMAL/IM-"

// SplitByBatch holds out every NORMAL study of HoldoutBatch and a fraction frac of the
// PNEUMONIA patients (seeded) for validation; the rest trains.
func SplitByBatch(samples []Sample, frac float64, seed uint64) (train, val []Sample) {
	var pneu, normal []Sample
	for _, s := range samples {
		if s.Label == 1 {
			pneu = append(pneu, s)
		} else {
			normal = append(normal, s)
		}
	}
	train, val = SplitByPatient(pneu, frac, seed)
	for _, s := range normal {
		if strings.HasPrefix(s.Patient, HoldoutBatch) {
			val = append(val, s)
		} else {
			train = append(train, s)
		}
	}
	sort.Slice(train, func(i, j int) bool { return train[i].Path < train[j].Path })
	sort.Slice(val, func(i, j int) bool { return val[i].Path < val[j].Path })
	return train, val
}

// Subsample returns n samples drawn with seed, keeping the class ratio (all if n ≥ len).
func Subsample(samples []Sample, n int, seed uint64) []Sample {
	if n <= 0 || n >= len(samples) {
		return samples
	}
	idx := rand.New(rand.NewPCG(seed, 0x5b5e7)).Perm(len(samples))
	var byClass [2][]int
	for _, i := range idx {
		byClass[samples[i].Label] = append(byClass[samples[i].Label], i)
	}
	n0 := int(math.Round(float64(n) * float64(len(byClass[0])) / float64(len(samples))))
	pick := append(append([]int(nil), byClass[0][:min(n0, len(byClass[0]))]...), byClass[1][:min(n-n0, len(byClass[1]))]...)
	sort.Ints(pick)
	out := make([]Sample, len(pick))
	for i, j := range pick {
		out[i] = samples[j]
	}
	return out
}

// LoadGrey decodes every sample and stores the grey plane of the model's input (the one
// preprocessing path, imaging.Plane), using workers goroutines.
func LoadGrey(ctx context.Context, samples []Sample, spec imaging.InputSpec, workers int) error {
	if err := spec.Validate(); err != nil {
		return err
	}
	workers = max(workers, 1)
	var wg sync.WaitGroup
	errs := make([]error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < len(samples); i += workers {
				if err := ctx.Err(); err != nil {
					errs[w] = err
					return
				}
				g, err := loadOne(samples[i].Path, spec)
				if err != nil {
					errs[w] = err
					return
				}
				samples[i].Grey = g
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func loadOne(path string, spec imaging.InputSpec) ([]uint8, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	img, _, err := imaging.Decode(f, imaging.Options{})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return imaging.Plane(img, spec)
}

func countPos(s []Sample) (pos int) {
	for _, x := range s {
		pos += int(x.Label)
	}
	return pos
}
