package main

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/cxr-edge/cxr-edge/edge/testenv"
)

// TestStressEmbeddedModel runs the stress test of the embedded model on its real validation
// split. At ×1.0 it must reproduce what the model's threshold was chosen for (validation
// sensitivity ≥ 95%): if the split, the preprocessing or the threshold drifted apart, this
// fails. Magnified or stretched, films must keep their calls.
func TestStressEmbeddedModel(t *testing.T) {
	data := testenv.SharedPath(t, "data", "chest_xray")
	var out bytes.Buffer
	if err := runStress(context.Background(), []string{"--data", data}, &out); err != nil {
		t.Fatal(err)
	}
	rows := regexp.MustCompile(`(?m)^\| ([^|]+) \| ([\d.]+)% \| ([\d.]+)% \| ([\d.]+)% \| ([\d.]+)% \|$`).FindAllStringSubmatch(out.String(), -1)
	// sens and spec of each row, by name.
	sens, spec := map[string]float64{}, map[string]float64{}
	for _, r := range rows {
		sens[r[1]], _ = strconv.ParseFloat(r[3], 64)
		spec[r[1]], _ = strconv.ParseFloat(r[4], 64)
	}
	if len(rows) != 15 || len(sens) != 15 || rows[0][1] != "×1.0" || !strings.Contains(out.String(), "841 validation images") ||
		!strings.Contains(out.String(), "largest fall below the first row, in points: framing specificity") {
		t.Fatalf("stress table:\n%s", out.String())
	}
	if sens["×1.0"] < 95 {
		t.Errorf("×1.0 sensitivity %v%% < 95%%: the model's threshold does not fit its validation split", sens["×1.0"])
	}
	// The shipped model was chosen for keeping its calls on magnified and stretched films
	// (MODEL.md: specificity 87.1% at ×1.4, where the session-2 model fell to 33%; 91.0% on
	// normals stretched down ×1.25 and sensitivity 94.3% on pneumonias stretched across ×1.25,
	// where the session-3 model had 58.1% and 78.4%); a model that lost that must not ship.
	for _, g := range []struct {
		row, what string
		got, min  float64
	}{
		{"×1.4", "specificity", spec["×1.4"], 80},
		{"tall ×1.25", "specificity", spec["tall ×1.25"], 80},
		{"wide ×1.25", "sensitivity", sens["wide ×1.25"], 90},
	} {
		if g.got < g.min {
			t.Errorf("%s %s %v%% < %v%%: the embedded model depends on how a film is framed or squashed", g.row, g.what, g.got, g.min)
		}
	}
}

func TestStressErrors(t *testing.T) {
	data := testenv.SharedPath(t, "data", "chest_xray")
	for _, args := range [][]string{{"--data", data, "extra"}, {"--data", data, "--nope"}} {
		if err := runStress(context.Background(), args, &bytes.Buffer{}); !errors.Is(err, errUsage) {
			t.Errorf("%v: err %v, want a usage error", args, err)
		}
	}
	if err := runStress(context.Background(), []string{"--data", data, "--model", "/nonexistent.tflite"}, &bytes.Buffer{}); err == nil {
		t.Error("missing model accepted")
	}
}

// The dataset and the embedded model are found from the repository root; outside a
// repository, not giving them is a usage error.
func TestDefaultsFromRepository(t *testing.T) {
	for _, f := range []func(string) (string, error){dataOrDefault, modelOrDefault} {
		if got, err := f("given"); got != "given" || err != nil {
			t.Errorf("explicit value replaced: %q, %v", got, err)
		}
	}
	d, err := dataOrDefault("")
	if err != nil || !strings.HasSuffix(d, filepath.Join("shared", "data", "chest_xray")) {
		t.Errorf("default data %q, %v", d, err)
	}
	m, err := modelOrDefault("")
	if err != nil || !strings.HasSuffix(m, defaultModel) {
		t.Errorf("default model %q, %v", m, err)
	}
	t.Chdir(t.TempDir())
	for _, f := range []func(string) (string, error){dataOrDefault, modelOrDefault} {
		if _, err := f(""); !errors.Is(err, errUsage) {
			t.Errorf("outside a repository: err %v, want a usage error", err)
		}
	}
}
