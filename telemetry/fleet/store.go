package fleet

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterr "go.etcd.io/bbolt/errors"

	"github.com/cxr-edge/cxr-edge/telemetry"
)

// Bucket layout of fleet.db:
//
//	devices    "site/id"            → deviceState JSON
//	health     "site/id" (bucket)   → ts (8-byte big-endian unix ns) → HealthPoint JSON
//	results    seq (8-byte BE)      → ResultRecord JSON, in arrival order
//	result_ids "site/id/resultID"   → seq, to count a redelivered result once
//	by_device  "site/id" (bucket)   → seq → empty: each device's results, for its page
//	commands   seq (8-byte BE)      → AuditEntry JSON, the operators' commands in order
var (
	bktDevices   = []byte("devices")
	bktHealth    = []byte("health")
	bktResults   = []byte("results")
	bktResultIDs = []byte("result_ids")
	bktByDevice  = []byte("by_device")
	bktCommands  = []byte("commands")
)

// store is the bbolt database of one dashboard.
type store struct {
	db *bolt.DB
}

func openStore(dir string) (*store, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("store.dir %s: %w", dir, err)
	}
	path := filepath.Join(dir, "fleet.db")
	// The timeout turns "another dashboard holds this store" into an error instead of a hang.
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bktDevices, bktHealth, bktResults, bktResultIDs, bktByDevice, bktCommands} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("init %s: %w", path, err)
	}
	return &store{db: db}, nil
}

func (s *store) close() error { return s.db.Close() }

func u64(v uint64) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], v)
	return b[:]
}

func tsKey(t time.Time) []byte { return u64(uint64(t.UnixNano())) }

func keyTS(k []byte) time.Time { return time.Unix(0, int64(binary.BigEndian.Uint64(k))).UTC() }

// loadDevices reads every persisted device.
func (s *store) loadDevices() ([]*deviceState, error) {
	var out []*deviceState
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bktDevices).ForEach(func(k, v []byte) error {
			d := new(deviceState)
			if err := json.Unmarshal(v, d); err != nil {
				return fmt.Errorf("device %s: %w", k, err)
			}
			out = append(out, d)
			return nil
		})
	})
	return out, err
}

// deleteDevice removes a device's record and health history; its results stay (they age out
// with the result feed).
func deleteDevice(tx *bolt.Tx, key string) error {
	if err := tx.Bucket(bktDevices).Delete([]byte(key)); err != nil {
		return err
	}
	if err := tx.Bucket(bktHealth).DeleteBucket([]byte(key)); err != nil && !errors.Is(err, bolterr.ErrBucketNotFound) {
		return err
	}
	return nil
}

func putDevice(tx *bolt.Tx, d *deviceState) error {
	b, err := json.Marshal(d)
	if err != nil {
		return err
	}
	return tx.Bucket(bktDevices).Put([]byte(deviceKey(d.Site, d.ID)), b)
}

// HealthPoint is one stored health report, the data of the history charts.
type HealthPoint struct {
	TS        time.Time `json:"ts"`
	TempC     *float64  `json:"temp_c,omitempty"`
	Throttled *bool     `json:"throttled,omitempty"`
	DiskFree  uint64    `json:"disk_free"`
	Queue     int       `json:"queue"`
	Outbox    int       `json:"outbox"`
	Failed    uint64    `json:"failed"`
	CPUPct    float64   `json:"cpu_pct"`
	InferP50  float64   `json:"infer_ms_p50"`
	InferP95  float64   `json:"infer_ms_p95"`
}

func pointOf(h *telemetry.Health, ts time.Time) HealthPoint {
	return HealthPoint{TS: ts, TempC: h.TempC, Throttled: h.Throttled, DiskFree: h.DiskFree, Queue: h.Queue,
		Outbox: h.Outbox, Failed: h.Failed, CPUPct: h.CPUPct, InferP50: h.InferMsP50, InferP95: h.InferMsP95}
}

// addHealth stores p unless a point of the device lies closer than minGap to it. History is
// keyed by ts, so reports arriving out of order still land in their place.
func addHealth(tx *bolt.Tx, site, id string, p HealthPoint, minGap time.Duration) (bool, error) {
	b, err := tx.Bucket(bktHealth).CreateBucketIfNotExists([]byte(deviceKey(site, id)))
	if err != nil {
		return false, err
	}
	key := tsKey(p.TS)
	c := b.Cursor()
	k, _ := c.Seek(key)
	if k != nil && keyTS(k).Sub(p.TS) < max(minGap, 1) {
		return false, nil // same ts, or a stored point just after it
	}
	var prev []byte
	if k == nil {
		prev, _ = c.Last()
	} else {
		prev, _ = c.Prev()
	}
	if prev != nil && p.TS.Sub(keyTS(prev)) < minGap {
		return false, nil
	}
	v, err := json.Marshal(p)
	if err != nil {
		return false, err
	}
	return true, b.Put(key, v)
}

// history returns a device's points with ts ≥ from, oldest first, at most limit (the newest).
func (s *store) history(site, id string, from time.Time, limit int) ([]HealthPoint, error) {
	var out []HealthPoint
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bktHealth).Bucket([]byte(deviceKey(site, id)))
		if b == nil {
			return nil
		}
		c := b.Cursor()
		for k, v := c.Last(); k != nil && len(out) < limit; k, v = c.Prev() {
			if keyTS(k).Before(from) {
				break
			}
			var p HealthPoint
			if err := json.Unmarshal(v, &p); err != nil {
				return fmt.Errorf("health point %s: %w", deviceKey(site, id), err)
			}
			out = append(out, p)
		}
		return nil
	})
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out, err
}

// ResultRecord is one result as the dashboard keeps it: no study hash, no image, no reason
// text, nothing that could identify a patient.
type ResultRecord struct {
	Site      string             `json:"site"`
	Device    string             `json:"device"`
	ID        string             `json:"id"`
	Label     string             `json:"label"`
	Score     float64            `json:"score"`
	Threshold float64            `json:"threshold"`
	ScoredAt  time.Time          `json:"scored_at"`
	Arrived   time.Time          `json:"arrived"`
	Source    string             `json:"source,omitempty"`
	Model     telemetry.ModelRef `json:"model"`
	TotalMs   float64            `json:"total_ms"`
}

func recordOf(site, device string, r *telemetry.Result, arrived time.Time) ResultRecord {
	return ResultRecord{Site: site, Device: device, ID: r.ID, Label: r.Label, Score: r.Score,
		Threshold: r.Threshold, ScoredAt: r.ScoredAt, Arrived: arrived, Source: r.Source,
		Model: r.Model, TotalMs: r.TimingsMs.Total}
}

// errDuplicate marks a result id already stored for the device.
var errDuplicate = errors.New("duplicate result")

func addResult(tx *bolt.Tx, rec ResultRecord) error {
	ids := tx.Bucket(bktResultIDs)
	idKey := []byte(rec.Site + "/" + rec.Device + "/" + rec.ID)
	if ids.Get(idKey) != nil {
		return errDuplicate
	}
	b := tx.Bucket(bktResults)
	seq, err := b.NextSequence()
	if err != nil {
		return err
	}
	v, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	if err := b.Put(u64(seq), v); err != nil {
		return err
	}
	idx, err := tx.Bucket(bktByDevice).CreateBucketIfNotExists([]byte(deviceKey(rec.Site, rec.Device)))
	if err != nil {
		return err
	}
	if err := idx.Put(u64(seq), nil); err != nil {
		return err
	}
	return ids.Put(idKey, u64(seq))
}

// addAudit appends a command to the audit trail and drops the entry max places older, so the
// trail keeps the last max entries.
func (s *store) addAudit(e AuditEntry, max int) error {
	v, err := json.Marshal(e)
	if err != nil {
		return err
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bktCommands)
		seq, err := b.NextSequence()
		if err != nil {
			return err
		}
		if seq > uint64(max) {
			if err := b.Delete(u64(seq - uint64(max))); err != nil {
				return err
			}
		}
		return b.Put(u64(seq), v)
	})
}

// audits returns up to limit audit entries of a site and device (empty: any), newest first.
func (s *store) audits(site, device string, limit int) ([]AuditEntry, error) {
	out := []AuditEntry{}
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bktCommands).Cursor()
		for k, v := c.Last(); k != nil && len(out) < limit; k, v = c.Prev() {
			var e AuditEntry
			if err := json.Unmarshal(v, &e); err != nil {
				return fmt.Errorf("audit entry %d: %w", binary.BigEndian.Uint64(k), err)
			}
			if (site == "" || site == e.Site) && (device == "" || device == e.Device) {
				out = append(out, e)
			}
		}
		return nil
	})
	return out, err
}

// ResultQuery filters the result feed; empty fields match everything.
type ResultQuery struct {
	Site, Device, Label string
	Limit               int
}

// maxScan bounds the records one query reads, so a filter that matches little stays cheap.
const maxScan = 500000

// results returns matching results, newest first. With both site and device it walks the
// device's index; otherwise it scans the feed from the newest end.
func (s *store) results(q ResultQuery) ([]ResultRecord, error) {
	out := []ResultRecord{}
	match := func(r ResultRecord) bool {
		return (q.Site == "" || q.Site == r.Site) && (q.Device == "" || q.Device == r.Device) && (q.Label == "" || q.Label == r.Label)
	}
	err := s.db.View(func(tx *bolt.Tx) error {
		feed := tx.Bucket(bktResults)
		var c *bolt.Cursor
		index := q.Site != "" && q.Device != ""
		if index {
			idx := tx.Bucket(bktByDevice).Bucket([]byte(deviceKey(q.Site, q.Device)))
			if idx == nil {
				return nil
			}
			c = idx.Cursor()
		} else {
			c = feed.Cursor()
		}
		n := 0
		for k, v := c.Last(); k != nil && len(out) < q.Limit && n < maxScan; k, v = c.Prev() {
			n++
			if index {
				if v = feed.Get(k); v == nil {
					continue // pruned
				}
			}
			var r ResultRecord
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("result %d: %w", binary.BigEndian.Uint64(k), err)
			}
			if match(r) {
				out = append(out, r)
			}
		}
		return nil
	})
	return out, err
}

// pruneStats says what one prune removed.
type pruneStats struct{ Results, Health int }

// prune deletes results and health points beyond the retention limits. It works in small
// transactions so the processor is never blocked for long.
func (s *store) prune(now time.Time, r Retention) (pruneStats, error) {
	var ps pruneStats
	// Results: oldest first, by age, then by count.
	for {
		n := 0
		err := s.db.Update(func(tx *bolt.Tx) error {
			b := tx.Bucket(bktResults)
			excess := b.Stats().KeyN - r.ResultsMaxCount
			// Victims are collected first and deleted after: bbolt documents that deleting
			// under a cursor may make its Next skip a key.
			type victim struct {
				k   []byte
				rec ResultRecord
			}
			var victims []victim
			c := b.Cursor()
			for k, v := c.First(); k != nil && len(victims) < 1000; k, v = c.Next() {
				var rec ResultRecord
				old := json.Unmarshal(v, &rec) != nil || now.Sub(rec.Arrived) > r.ResultsMaxAge
				if !old && len(victims) >= excess {
					break
				}
				victims = append(victims, victim{bytes.Clone(k), rec})
			}
			for _, vi := range victims {
				rec := vi.rec
				if err := tx.Bucket(bktResultIDs).Delete([]byte(rec.Site + "/" + rec.Device + "/" + rec.ID)); err != nil {
					return err
				}
				if idx := tx.Bucket(bktByDevice).Bucket([]byte(deviceKey(rec.Site, rec.Device))); idx != nil {
					if err := idx.Delete(vi.k); err != nil {
						return err
					}
				}
				if err := b.Delete(vi.k); err != nil {
					return err
				}
			}
			n = len(victims)
			return nil
		})
		if err != nil {
			return ps, err // ps counts only the committed batches
		}
		ps.Results += n
		if n < 1000 {
			break
		}
	}
	// Health: per device, by age and by count.
	var devs [][]byte
	if err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bktHealth).ForEach(func(k, _ []byte) error {
			devs = append(devs, append([]byte(nil), k...))
			return nil
		})
	}); err != nil {
		return ps, err
	}
	cutoff := now.Add(-r.HealthMaxAge)
	for _, dk := range devs {
		err := s.db.Update(func(tx *bolt.Tx) error {
			b := tx.Bucket(bktHealth).Bucket(dk)
			if b == nil {
				return nil
			}
			excess := b.Stats().KeyN - r.HealthMaxPoints
			var victims [][]byte // deleted after the walk, as for results
			c := b.Cursor()
			for k, _ := c.First(); k != nil; k, _ = c.Next() {
				if excess <= 0 && !keyTS(k).Before(cutoff) {
					break
				}
				victims = append(victims, bytes.Clone(k))
				excess--
			}
			for _, k := range victims {
				if err := b.Delete(k); err != nil {
					return err
				}
			}
			ps.Health += len(victims)
			return nil
		})
		if err != nil {
			return ps, err
		}
	}
	return ps, nil
}
