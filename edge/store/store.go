// Package store is the device's durable memory: every input is recorded (by content hash)
// before it is processed, every result is committed together with its outbox entry, and an
// outbox entry leaves only when the broker acknowledged it.
//
// Layout under the store directory:
//
//	store.db            bbolt database: input records, results, outbox, counters, id key
//	blobs/ab/abcd…      the input bytes, named by their id, written to a temporary file,
//	                    fsynced, renamed into place and the directory fsynced before the
//	                    input's record is committed
//
// An input's id is a keyed hash of its bytes (HMAC-SHA256 under a random key the store makes
// when it is created and never lets out), so the same image always gets the same id on this
// device, while the id, which leaves the device in every result, cannot be recomputed from the
// image by anyone else: holding a film does not let a reader of the dashboard confirm its
// result. Stores made before ids were keyed keep plain sha256 ids until they are empty at an
// Open.
//
// Images can be several megabytes; keeping them as files keeps the database small (bbolt
// never shrinks its file) and lets the screen or a DICOM export read them without copying.
// A blob without a record (a crash between the rename and the commit) is removed on Open.
//
// Lifecycle of an input: Submit → pending → Commit(result) → done (or failed when the result
// is "unreadable") with the result and its outbox entry written in the same transaction →
// Ack(seq) after the broker's PUBACK → eligible for retention (Prune).
package store

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/cxr-edge/cxr-edge/telemetry"
	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// Sentinel errors; match them with errors.Is.
var (
	ErrNotFound   = errors.New("store: not found")
	ErrLocked     = errors.New("store: database is in use by another process")
	ErrEmpty      = errors.New("store: empty input")
	ErrTooLarge   = errors.New("store: input too large")
	ErrNotPending = errors.New("store: input is not pending")
	ErrInvalid    = errors.New("store: invalid argument")
	ErrCorrupt    = errors.New("store: stored data is corrupt")
)

// State is the processing state of an input.
type State string

// Input states.
const (
	StatePending State = "pending" // recorded, not yet scored (or interrupted by a crash)
	StateDone    State = "done"    // scored; result and outbox entry committed
	StateFailed  State = "failed"  // could not be scored; an "unreadable" result was committed
)

// Options tune a store. The zero value gives the documented defaults.
type Options struct {
	// MaxAge is how long a delivered (acked) result and its input are kept. Default 30 days.
	MaxAge time.Duration
	// MaxBytes bounds the total size of stored inputs; the oldest delivered ones are removed
	// first. Inputs whose results have not been acked are never removed. Default 2 GiB.
	MaxBytes int64
	// MaxInputBytes rejects larger inputs with ErrTooLarge. Default 256 MiB.
	MaxInputBytes int64
	// OpenTimeout is how long Open waits for the database lock held by another process
	// before failing with ErrLocked. Default 2 s.
	OpenTimeout time.Duration
	// Logger receives warnings (orphan blobs removed, …). Default slog.Default().
	Logger *slog.Logger
}

// Defaults of Options.
const (
	DefaultMaxAge        = 30 * 24 * time.Hour
	DefaultMaxBytes      = 2 << 30
	DefaultMaxInputBytes = 256 << 20
	DefaultOpenTimeout   = 2 * time.Second
)

// WithDefaults returns o with every zero field set to its default.
func (o Options) WithDefaults() Options {
	if o.MaxAge <= 0 {
		o.MaxAge = DefaultMaxAge
	}
	if o.MaxBytes <= 0 {
		o.MaxBytes = DefaultMaxBytes
	}
	if o.MaxInputBytes <= 0 {
		o.MaxInputBytes = DefaultMaxInputBytes
	}
	if o.OpenTimeout <= 0 {
		o.OpenTimeout = DefaultOpenTimeout
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

// Input is the record of one received input.
type Input struct {
	ID         string    `json:"-"`   // Store.ID of the bytes: 64 lowercase hex digits
	Seq        uint64    `json:"seq"` // arrival order
	Source     string    `json:"source"`
	Name       string    `json:"name,omitempty"` // original file name; stays on the device
	ReceivedAt time.Time `json:"received_at"`
	Size       int64     `json:"size"`
	State      State     `json:"state"`
	DoneAt     time.Time `json:"done_at,omitzero"`
	CommitSeq  uint64    `json:"commit_seq,omitempty"` // order of Commit; 0 while pending
	OutboxSeq  uint64    `json:"outbox_seq,omitempty"`
	Acked      bool      `json:"acked,omitempty"` // the broker acknowledged the result
}

// Stats are the store's counters.
type Stats struct {
	Inputs  int   // records held
	Pending int   // inputs waiting to be scored
	Outbox  int   // results waiting for the broker
	Bytes   int64 // total size of stored inputs
}

// PruneStats says what a Prune removed.
type PruneStats struct {
	Removed int
	Bytes   int64
}

// Bucket names and counter keys.
var (
	bInputs   = []byte("inputs")  // id → Input JSON
	bArrival  = []byte("arrival") // seq → id (every input, arrival order)
	bPending  = []byte("pending") // seq → id (pending inputs only)
	bResults  = []byte("results") // id → Result JSON
	bCommits  = []byte("commits") // commit seq → id
	bOutbox   = []byte("outbox")  // outbox seq → id
	bMeta     = []byte("meta")    // counters, id key
	kIDKey    = []byte("id_key")  // key of input ids (absent in stores made before keyed ids)
	kPending  = []byte("pending") // count
	kOutbox   = []byte("outbox")  // count
	kBytes    = []byte("bytes")   // sum of input sizes
	kInputs   = []byte("inputs")  // count
	allBucket = [][]byte{bInputs, bArrival, bPending, bResults, bCommits, bOutbox, bMeta}
)

// Store is an open store directory. Its methods are safe for concurrent use.
type Store struct {
	dir  string
	blob string
	db   *bolt.DB
	opts Options
	// blobs orders blob files against their records: Submit holds it shared from writing
	// the blob until the record is committed, Prune exclusively from deleting records until
	// their blobs are gone. Without it a Submit of bytes that Prune is removing can find
	// the old blob, skip writing it, commit a record, and then lose the blob to Prune.
	blobs sync.RWMutex
	// idKey keys input ids (see ID); nil in a store made before ids were keyed.
	idKey []byte
}

// idKeySize is the length of the random id key (HMAC-SHA256 gains nothing from a longer one).
const idKeySize = 32

// Open opens (creating if needed) the store in dir. A second process opening the same
// directory fails after Options.OpenTimeout with ErrLocked.
func Open(dir string, opts Options) (*Store, error) {
	opts = opts.WithDefaults()
	if dir == "" {
		return nil, fmt.Errorf("%w: empty store directory", ErrInvalid)
	}
	blobDir := filepath.Join(dir, "blobs")
	if err := makeBlobDirs(blobDir); err != nil {
		return nil, err
	}
	path := filepath.Join(dir, "store.db")
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: opts.OpenTimeout})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("%w: %s (is another cxr-edge running?)", ErrLocked, path)
	}
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	var idKey []byte
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range allBucket {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		idKey, err = loadIDKey(tx)
		return err
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("store: initialise %s: %w", path, err)
	}
	if idKey == nil {
		opts.Logger.Warn("store: input ids are plain sha256 (store made before keyed ids); they become keyed at the first start with an empty store", "dir", dir)
	}
	s := &Store{dir: dir, blob: blobDir, db: db, opts: opts, idKey: idKey}
	if err := s.sweepBlobs(); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

// Close closes the database.
func (s *Store) Close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("store: close: %w", err)
	}
	return nil
}

// Dir is the store directory (for disk-free figures).
func (s *Store) Dir() string { return s.dir }

// loadIDKey returns the store's id key, making one when the store holds no input (a new
// store, or an old one emptied by retention). An old store with inputs keeps nil (plain
// sha256): changing the ids of held inputs would re-score them and break the link between
// published results and their inputs.
func loadIDKey(tx *bolt.Tx) ([]byte, error) {
	meta := tx.Bucket(bMeta)
	if k := meta.Get(kIDKey); k != nil {
		if len(k) != idKeySize {
			return nil, fmt.Errorf("%w: id key has %d bytes, want %d", ErrCorrupt, len(k), idKeySize)
		}
		return bytes.Clone(k), nil
	}
	if k, _ := tx.Bucket(bInputs).Cursor().First(); k != nil {
		return nil, nil
	}
	key := NewIDKey()
	if err := meta.Put(kIDKey, key); err != nil {
		return nil, err
	}
	return key, nil
}

// NewIDKey returns a new random key for KeyedID.
func NewIDKey() []byte {
	key := make([]byte, idKeySize)
	rand.Read(key) // never fails: crypto/rand crashes the program rather than return a weak key
	return key
}

// KeyedID is the id of an input with these bytes under key: HMAC-SHA256 as 64 lowercase hex
// digits. A store uses its own key (ID); a pipeline without a store uses one key per run.
func KeyedID(key, data []byte) string {
	m := hmac.New(sha256.New, key)
	m.Write(data)
	return hex.EncodeToString(m.Sum(nil))
}

// ID returns the id an input with these bytes gets in this store: KeyedID under the store's
// key, or plain sha256 in a store made before ids were keyed.
func (s *Store) ID(data []byte) string {
	if s.idKey == nil {
		sum := sha256.Sum256(data)
		return hex.EncodeToString(sum[:])
	}
	return KeyedID(s.idKey, data)
}

func validID(id string) bool {
	if len(id) != 64 {
		return false
	}
	_, err := hex.DecodeString(id)
	return err == nil && strings.ToLower(id) == id
}

// BlobPath is where the bytes of input id are kept; "" when id is not an input id (64
// lowercase hex digits), so a caller's bad id can name no other file.
func (s *Store) BlobPath(id string) string {
	if !validID(id) {
		return ""
	}
	return filepath.Join(s.blob, id[:2], id)
}

// Submit records an input before it is processed. The bytes are made durable first, then
// the record. If the same bytes were submitted before, it returns the existing record and
// duplicate=true and stores nothing.
func (s *Store) Submit(source, name string, data []byte, receivedAt time.Time) (in Input, duplicate bool, err error) {
	if len(data) == 0 {
		return Input{}, false, ErrEmpty
	}
	if int64(len(data)) > s.opts.MaxInputBytes {
		return Input{}, false, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(data), s.opts.MaxInputBytes)
	}
	if source == "" {
		return Input{}, false, fmt.Errorf("%w: empty source", ErrInvalid)
	}
	if receivedAt.IsZero() {
		receivedAt = time.Now()
	}
	id := s.ID(data)
	s.blobs.RLock()
	defer s.blobs.RUnlock()
	if old, err := s.Input(id); err == nil {
		return old, true, nil
	} else if !errors.Is(err, ErrNotFound) {
		return Input{}, false, err
	}
	if err := s.writeBlob(id, data); err != nil {
		return Input{}, false, err
	}
	err = s.db.Update(func(tx *bolt.Tx) error {
		inputs := tx.Bucket(bInputs)
		if v := inputs.Get([]byte(id)); v != nil { // submitted concurrently
			duplicate = true
			return decodeInput(id, v, &in)
		}
		seq, err := tx.Bucket(bArrival).NextSequence()
		if err != nil {
			return err
		}
		in = Input{ID: id, Seq: seq, Source: source, Name: name, ReceivedAt: receivedAt.UTC(),
			Size: int64(len(data)), State: StatePending}
		if err := putInput(tx, in); err != nil {
			return err
		}
		k := u64(seq)
		if err := tx.Bucket(bArrival).Put(k, []byte(id)); err != nil {
			return err
		}
		if err := tx.Bucket(bPending).Put(k, []byte(id)); err != nil {
			return err
		}
		return addCounters(tx, delta{kPending, 1}, delta{kInputs, 1}, delta{kBytes, in.Size})
	})
	if err != nil {
		return Input{}, false, fmt.Errorf("store: record input %s: %w", id, err)
	}
	return in, duplicate, nil
}

// makeBlobDirs creates blobs/00 … blobs/ff once, durably, so writing a blob never has to
// make (and fsync) a directory entry in blobs/ itself.
func makeBlobDirs(blobDir string) error {
	if err := os.MkdirAll(blobDir, 0o700); err != nil {
		return fmt.Errorf("store: create %s: %w", blobDir, err)
	}
	created := false
	for i := range 256 {
		sub := filepath.Join(blobDir, fmt.Sprintf("%02x", i))
		err := os.Mkdir(sub, 0o700)
		if err != nil && !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("store: create %s: %w", sub, err)
		}
		created = created || err == nil
	}
	if created {
		if err := syncDir(blobDir); err != nil {
			return err
		}
		return syncDir(filepath.Dir(blobDir))
	}
	return nil
}

// writeBlob makes the bytes durable under blobs/: temp file, fsync, rename, fsync dirs.
func (s *Store) writeBlob(id string, data []byte) error {
	final := s.BlobPath(id)
	sub := filepath.Dir(final) // created durably by Open
	if st, err := os.Stat(final); err == nil && st.Size() == int64(len(data)) {
		// Same content, written by a concurrent Submit of the same bytes that may not have
		// fsynced the directory yet: sync it before our record can point at the blob.
		return syncDir(sub)
	}
	f, err := os.CreateTemp(s.blob, id+".*.tmp")
	if err != nil {
		return fmt.Errorf("store: blob temp: %w", err)
	}
	tmp := f.Name()
	_, werr := f.Write(data)
	if werr == nil {
		werr = f.Sync()
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Rename(tmp, final)
	}
	if werr != nil {
		os.Remove(tmp)
		return fmt.Errorf("store: write blob %s: %w", id, werr)
	}
	return syncDir(sub)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("store: sync %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("store: sync %s: %w", dir, err)
	}
	return nil
}

// sweepBlobs removes temporary files and blobs that have no record (left by a crash
// between writing a blob and committing its record, or between Prune's commit and removal).
func (s *Store) sweepBlobs() error {
	var orphans []string
	err := s.db.View(func(tx *bolt.Tx) error {
		inputs := tx.Bucket(bInputs)
		return filepath.WalkDir(s.blob, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() {
				return nil
			}
			name := d.Name()
			if strings.HasSuffix(name, ".tmp") || !validID(name) || inputs.Get([]byte(name)) == nil {
				orphans = append(orphans, path)
			}
			return nil
		})
	})
	if err != nil {
		return fmt.Errorf("store: scan blobs: %w", err)
	}
	for _, p := range orphans {
		s.opts.Logger.Warn("store: removing blob without record", "path", p)
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("store: remove orphan: %w", err)
		}
	}
	return nil
}

// Input returns the record of input id, or ErrNotFound.
func (s *Store) Input(id string) (Input, error) {
	var in Input
	err := s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bInputs).Get([]byte(id))
		if v == nil {
			return fmt.Errorf("%w: input %q", ErrNotFound, id)
		}
		return decodeInput(id, v, &in)
	})
	return in, err
}

// Data returns the bytes of input id, verified against its hash.
func (s *Store) Data(id string) ([]byte, error) {
	if !validID(id) {
		return nil, fmt.Errorf("%w: input %q", ErrNotFound, id)
	}
	data, err := os.ReadFile(s.BlobPath(id))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: bytes of input %s", ErrNotFound, id)
	}
	if err != nil {
		return nil, fmt.Errorf("store: read input %s: %w", id, err)
	}
	if s.ID(data) != id {
		return nil, fmt.Errorf("%w: bytes of input %s do not match their hash", ErrCorrupt, id)
	}
	return data, nil
}

// Pending lists the inputs still to be scored, in arrival order. After a crash these are
// the inputs to process again.
func (s *Store) Pending() ([]Input, error) {
	var out []Input
	err := s.db.View(func(tx *bolt.Tx) error {
		inputs := tx.Bucket(bInputs)
		return tx.Bucket(bPending).ForEach(func(_, id []byte) error {
			var in Input
			if err := decodeInput(string(id), inputs.Get(id), &in); err != nil {
				return err
			}
			out = append(out, in)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("store: pending: %w", err)
	}
	return out, nil
}

// Commit stores the result of a pending input, its outbox entry, and marks the input done
// (failed when the label is "unreadable"), in one transaction. It returns the outbox
// sequence. r.ID must be the input's id; r.Schema is filled in when empty.
func (s *Store) Commit(r telemetry.Result) (uint64, error) {
	if r.Schema == "" {
		r.Schema = telemetry.SchemaResult
	}
	switch {
	case r.Schema != telemetry.SchemaResult:
		return 0, fmt.Errorf("%w: result schema %q", ErrInvalid, r.Schema)
	case r.Label != telemetry.LabelNormal && r.Label != telemetry.LabelPneumonia && r.Label != telemetry.LabelUnreadable:
		return 0, fmt.Errorf("%w: result label %q", ErrInvalid, r.Label)
	}
	payload, err := json.Marshal(r)
	if err != nil {
		return 0, fmt.Errorf("%w: result: %v", ErrInvalid, err)
	}
	var seq uint64
	err = s.db.Update(func(tx *bolt.Tx) error {
		var in Input
		v := tx.Bucket(bInputs).Get([]byte(r.ID))
		if v == nil {
			return fmt.Errorf("%w: input %q", ErrNotFound, r.ID)
		}
		if err := decodeInput(r.ID, v, &in); err != nil {
			return err
		}
		if in.State != StatePending {
			return fmt.Errorf("%w: %s is %s", ErrNotPending, r.ID, in.State)
		}
		outbox := tx.Bucket(bOutbox)
		var err error
		if seq, err = outbox.NextSequence(); err != nil {
			return err
		}
		commits := tx.Bucket(bCommits)
		cseq, err := commits.NextSequence()
		if err != nil {
			return err
		}
		in.State = StateDone
		if r.Label == telemetry.LabelUnreadable {
			in.State = StateFailed
		}
		in.DoneAt = time.Now().UTC()
		in.CommitSeq, in.OutboxSeq = cseq, seq
		id := []byte(r.ID)
		for _, err := range []error{
			putInput(tx, in),
			tx.Bucket(bPending).Delete(u64(in.Seq)),
			tx.Bucket(bResults).Put(id, payload),
			commits.Put(u64(cseq), id),
			outbox.Put(u64(seq), id),
		} {
			if err != nil {
				return err
			}
		}
		return addCounters(tx, delta{kPending, -1}, delta{kOutbox, 1})
	})
	if err != nil {
		return 0, fmt.Errorf("store: commit result %s: %w", r.ID, err)
	}
	return seq, nil
}

// Outbox returns up to limit of the oldest outbox entries, oldest first (limit <= 0: all).
func (s *Store) Outbox(limit int) ([]telemetry.OutboxEntry, error) {
	var out []telemetry.OutboxEntry
	err := s.db.View(func(tx *bolt.Tx) error {
		results := tx.Bucket(bResults)
		c := tx.Bucket(bOutbox).Cursor()
		for k, id := c.First(); k != nil && (limit <= 0 || len(out) < limit); k, id = c.Next() {
			p := results.Get(id)
			if p == nil {
				return fmt.Errorf("%w: outbox entry %d has no result %s", ErrCorrupt, binary.BigEndian.Uint64(k), id)
			}
			out = append(out, telemetry.OutboxEntry{Seq: binary.BigEndian.Uint64(k), ResultID: string(id), Payload: bytes.Clone(p)})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: outbox: %w", err)
	}
	return out, nil
}

// Ack removes outbox entry seq after the broker acknowledged it and marks the result
// delivered. Acking an absent sequence does nothing (a repeated acknowledgement).
func (s *Store) Ack(seq uint64) error {
	err := s.db.Update(func(tx *bolt.Tx) error {
		outbox := tx.Bucket(bOutbox)
		k := u64(seq)
		id := outbox.Get(k)
		if id == nil {
			return nil
		}
		id = bytes.Clone(id)
		if err := outbox.Delete(k); err != nil {
			return err
		}
		if err := addCounters(tx, delta{kOutbox, -1}); err != nil {
			return err
		}
		var in Input
		if err := decodeInput(string(id), tx.Bucket(bInputs).Get(id), &in); err != nil {
			return err
		}
		in.Acked = true
		return putInput(tx, in)
	})
	if err != nil {
		return fmt.Errorf("store: ack %d: %w", seq, err)
	}
	return nil
}

// Result returns the committed result of input id, or ErrNotFound.
func (s *Store) Result(id string) (telemetry.Result, error) {
	var r telemetry.Result
	err := s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bResults).Get([]byte(id))
		if v == nil {
			return fmt.Errorf("%w: result %q", ErrNotFound, id)
		}
		return decodeResult(v, &r)
	})
	return r, err
}

// Results returns the newest n results (by commit order), newest first.
func (s *Store) Results(n int) ([]telemetry.Result, error) {
	var out []telemetry.Result
	err := s.db.View(func(tx *bolt.Tx) error {
		results := tx.Bucket(bResults)
		c := tx.Bucket(bCommits).Cursor()
		for k, id := c.Last(); k != nil && len(out) < n; k, id = c.Prev() {
			var r telemetry.Result
			if err := decodeResult(results.Get(id), &r); err != nil {
				return err
			}
			out = append(out, r)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: results: %w", err)
	}
	return out, nil
}

// Stats returns the store's counters.
func (s *Store) Stats() (Stats, error) {
	var st Stats
	err := s.db.View(func(tx *bolt.Tx) error {
		st.Inputs = int(counter(tx, kInputs))
		st.Pending = int(counter(tx, kPending))
		st.Outbox = int(counter(tx, kOutbox))
		st.Bytes = counter(tx, kBytes)
		return nil
	})
	if err != nil {
		return Stats{}, fmt.Errorf("store: stats: %w", err)
	}
	return st, nil
}

// Prune applies retention: delivered (acked) inputs older than MaxAge (by the time they were
// scored) are removed, then the oldest delivered ones while the total exceeds MaxBytes.
// Pending inputs and results not yet acknowledged are never removed. A removed input may
// be scored again if the same image arrives later.
func (s *Store) Prune(now time.Time) (PruneStats, error) {
	var ps PruneStats
	var removed []string
	s.blobs.Lock()
	defer s.blobs.Unlock()
	err := s.db.Update(func(tx *bolt.Tx) error {
		total := counter(tx, kBytes)
		inputs := tx.Bucket(bInputs)
		type victim struct {
			k  []byte
			in Input
		}
		var victims []victim
		c := tx.Bucket(bCommits).Cursor()
		for k, id := c.First(); k != nil; k, id = c.Next() {
			var in Input
			if err := decodeInput(string(id), inputs.Get(id), &in); err != nil {
				return err
			}
			if !in.Acked {
				continue
			}
			// Full scan: unacked entries are skipped wherever they sit, and the stores
			// this bounds hold thousands of records, not millions.
			if now.Sub(in.DoneAt) <= s.opts.MaxAge && total <= s.opts.MaxBytes {
				continue
			}
			victims = append(victims, victim{bytes.Clone(k), in})
			total -= in.Size
		}
		for _, v := range victims {
			id := []byte(v.in.ID)
			for _, err := range []error{
				inputs.Delete(id),
				tx.Bucket(bResults).Delete(id),
				tx.Bucket(bCommits).Delete(v.k),
				tx.Bucket(bArrival).Delete(u64(v.in.Seq)),
			} {
				if err != nil {
					return err
				}
			}
			if err := addCounters(tx, delta{kInputs, -1}, delta{kBytes, -v.in.Size}); err != nil {
				return err
			}
			ps.Removed++
			ps.Bytes += v.in.Size
			removed = append(removed, v.in.ID)
		}
		return nil
	})
	if err != nil {
		return PruneStats{}, fmt.Errorf("store: prune: %w", err)
	}
	// Blobs go after the commit; a crash here leaves orphans that Open removes.
	for _, id := range removed {
		if err := os.Remove(s.BlobPath(id)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return ps, fmt.Errorf("store: prune blob %s: %w", id, err)
		}
	}
	return ps, nil
}

func putInput(tx *bolt.Tx, in Input) error {
	v, err := json.Marshal(in)
	if err != nil {
		return err
	}
	return tx.Bucket(bInputs).Put([]byte(in.ID), v)
}

func decodeInput(id string, v []byte, in *Input) error {
	if v == nil {
		return fmt.Errorf("%w: input %q", ErrNotFound, id)
	}
	if err := json.Unmarshal(v, in); err != nil {
		return fmt.Errorf("%w: input record %s: %v", ErrCorrupt, id, err)
	}
	in.ID = id
	return nil
}

func decodeResult(v []byte, r *telemetry.Result) error {
	if v == nil {
		return fmt.Errorf("%w: result missing", ErrCorrupt)
	}
	if err := json.Unmarshal(v, r); err != nil {
		return fmt.Errorf("%w: result record: %v", ErrCorrupt, err)
	}
	return nil
}

func u64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

func counter(tx *bolt.Tx, k []byte) int64 {
	v := tx.Bucket(bMeta).Get(k)
	if len(v) != 8 {
		return 0
	}
	return int64(binary.BigEndian.Uint64(v))
}

type delta struct {
	key []byte
	n   int64
}

// addCounters is called inside the transaction that changes what they count, so counters
// can never disagree with the buckets.
func addCounters(tx *bolt.Tx, ds ...delta) error {
	for _, d := range ds {
		if err := tx.Bucket(bMeta).Put(d.key, u64(uint64(counter(tx, d.key)+d.n))); err != nil {
			return err
		}
	}
	return nil
}
