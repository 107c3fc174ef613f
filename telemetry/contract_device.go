package telemetry

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
