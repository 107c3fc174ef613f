package telemetry

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// Command names understood by the device (topic …/cmd/<name>).
const (
	CmdPing         = "ping"
	CmdReloadModel  = "reload-model"
	CmdSetThreshold = "set-threshold"
)

// PingCommand is the payload of …/cmd/ping; an empty payload is also accepted.
type PingCommand struct {
	ID string `json:"id,omitempty"` // echoed in the reply
}

// ReloadModelCommand is the payload of …/cmd/reload-model: exactly one of URL or Path, and
// the sha256 the model file must have.
type ReloadModelCommand struct {
	ID     string `json:"id,omitempty"` // echoed in the reply
	URL    string `json:"url,omitempty"`
	Path   string `json:"path,omitempty"`
	SHA256 string `json:"sha256"`
}

// SetThresholdCommand is the payload of …/cmd/set-threshold: a site's operating point for one
// model, named by its sha256, so that a threshold calibrated for one model is never applied to
// another's scores. A null or absent threshold clears it: the device returns to
// model.threshold (for the configured model) or the model's own.
type SetThresholdCommand struct {
	ID          string   `json:"id,omitempty"` // echoed in the reply
	Threshold   *float64 `json:"threshold"`
	ModelSHA256 string   `json:"model_sha256"`
}

// OperatingPoint is the reply detail of set-threshold: the threshold the device now applies,
// where it comes from, and the model it belongs to.
type OperatingPoint struct {
	Threshold float64  `json:"threshold"`
	Source    string   `json:"source"` // ThresholdSite, ThresholdConfiguration or ThresholdModel
	Model     ModelRef `json:"model"`
}

// Sources of the operating point, most specific first.
const (
	ThresholdSite          = "site"          // set by cmd/set-threshold for this model
	ThresholdConfiguration = "configuration" // model.threshold, for the configured model
	ThresholdModel         = "model"         // the model's own (its metadata)
)

// IsSHA256Hex reports whether s is a sha256 as the contract writes it: 64 hex digits (either
// case).
func IsSHA256Hex(s string) bool {
	b, err := hex.DecodeString(s)
	return err == nil && len(b) == sha256.Size
}

// MaxCommandBytes bounds a command payload; commands are small JSON objects.
const MaxCommandBytes = 64 << 10

// ParseReloadModel decodes and checks a reload-model command: exactly one of url or path,
// and a sha256 of 64 hex digits.
func ParseReloadModel(payload []byte) (ReloadModelCommand, error) {
	var c ReloadModelCommand
	if err := decodeCommand(payload, &c); err != nil {
		return c, err
	}
	if (c.URL == "") == (c.Path == "") {
		return c, errors.New("reload-model needs exactly one of url or path")
	}
	if !IsSHA256Hex(c.SHA256) {
		return c, fmt.Errorf("reload-model sha256 %q: want 64 hex digits", c.SHA256)
	}
	return c, nil
}

// ParseSetThreshold decodes and checks a set-threshold command: a model_sha256 of 64 hex
// digits, and a threshold strictly between 0 and 1 or null.
func ParseSetThreshold(payload []byte) (SetThresholdCommand, error) {
	var c SetThresholdCommand
	if err := decodeCommand(payload, &c); err != nil {
		return c, err
	}
	if !IsSHA256Hex(c.ModelSHA256) {
		return c, fmt.Errorf("set-threshold model_sha256 %q: want the 64 hex digits of the model it is for", c.ModelSHA256)
	}
	c.ModelSHA256 = strings.ToLower(c.ModelSHA256)
	if t := c.Threshold; t != nil && !(*t > 0 && *t < 1) {
		return c, fmt.Errorf("set-threshold threshold %v: want a number strictly between 0 and 1, or null to clear", *t)
	}
	return c, nil
}

// ParsePing decodes a ping command; an empty payload is a ping without id.
func ParsePing(payload []byte) (PingCommand, error) {
	var c PingCommand
	err := decodeCommand(payload, &c)
	return c, err
}

func decodeCommand(payload []byte, v any) error {
	if len(payload) > MaxCommandBytes {
		return fmt.Errorf("command payload of %d bytes exceeds %d", len(payload), MaxCommandBytes)
	}
	if len(bytes.TrimSpace(payload)) == 0 {
		return nil
	}
	if err := json.Unmarshal(payload, v); err != nil {
		return fmt.Errorf("command payload is not valid JSON: %w", err)
	}
	return nil
}
