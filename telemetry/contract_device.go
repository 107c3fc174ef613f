package telemetry

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
)

// Command names understood by the device (topic …/cmd/<name>).
const (
	CmdPing        = "ping"
	CmdReloadModel = "reload-model"
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
	if b, err := hex.DecodeString(c.SHA256); err != nil || len(b) != sha256.Size {
		return c, fmt.Errorf("reload-model sha256 %q: want 64 hex digits", c.SHA256)
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
