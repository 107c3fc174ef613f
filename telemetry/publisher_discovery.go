package telemetry

import "encoding/json"

// haSensor is one Home Assistant MQTT discovery config (a subset of its documented keys).
type haSensor struct {
	Name                string   `json:"name"`
	UniqueID            string   `json:"unique_id"`
	StateTopic          string   `json:"state_topic"`
	ValueTemplate       string   `json:"value_template"`
	Unit                string   `json:"unit_of_measurement,omitempty"`
	DeviceClass         string   `json:"device_class,omitempty"`
	StateClass          string   `json:"state_class,omitempty"`
	AvailabilityTopic   string   `json:"availability_topic"`
	AvailabilityTmpl    string   `json:"availability_template"`
	PayloadAvailable    string   `json:"payload_available"`
	PayloadNotAvailable string   `json:"payload_not_available"`
	Device              haDevice `json:"device"`
}

type haDevice struct {
	Identifiers  []string `json:"identifiers"`
	Name         string   `json:"name"`
	Model        string   `json:"model"`
	Manufacturer string   `json:"manufacturer"`
	SWVersion    string   `json:"sw_version,omitempty"`
}

type retainedMessage struct {
	topic   string
	payload []byte
}

// discoveryConfigs are the retained Home Assistant configs: a few health figures and the
// last result label, each under <prefix>/sensor/<site>_<device>/<name>/config.
func (p *Publisher) discoveryConfigs() []retainedMessage {
	t := p.opts.Topics
	node := t.Site + "_" + t.Device
	dev := haDevice{Identifiers: []string{"cxr-edge_" + node}, Name: "cxr-edge " + t.Site + "/" + t.Device,
		Model: "cxr-edge", Manufacturer: "cxr-edge", SWVersion: p.opts.Version}
	sensors := []struct {
		name, title, topic, field, unit, class, stateClass string
	}{
		{"temperature", "SoC temperature", t.Health(), "temp_c", "°C", "temperature", "measurement"},
		{"cpu", "CPU", t.Health(), "cpu_pct", "%", "", "measurement"},
		{"disk_free", "Free disk", t.Health(), "disk_free", "B", "data_size", "measurement"},
		{"outbox", "Results waiting", t.Health(), "outbox", "", "", "measurement"},
		{"indicator", "Indicator", t.Health(), "indicator", "", "", ""},
		{"last_label", "Last result", t.Result(), "label", "", "", ""},
	}
	out := make([]retainedMessage, 0, len(sensors))
	for _, s := range sensors {
		cfg := haSensor{Name: s.title, UniqueID: "cxr-edge_" + node + "_" + s.name, StateTopic: s.topic,
			ValueTemplate: "{{ value_json." + s.field + " }}", Unit: s.unit, DeviceClass: s.class, StateClass: s.stateClass,
			AvailabilityTopic: t.Status(), AvailabilityTmpl: "{{ value_json.state }}",
			PayloadAvailable: StateOnline, PayloadNotAvailable: StateOffline, Device: dev}
		b, _ := json.Marshal(cfg)
		out = append(out, retainedMessage{p.opts.DiscoveryPrefix + "/sensor/" + node + "/" + s.name + "/config", b})
	}
	return out
}
