package intake

import (
	"context"
	"log/slog"
	"time"

	"github.com/cxr-edge/cxr-edge/edge/dicom"
)

// SourceDICOM: an image sent over the DICOM network (C-STORE to the device's Store SCP).
const SourceDICOM = "dicom"

// DICOMStore hands each instance the Store SCP (dicom.Server) receives to a Processor. It
// returns only once the input is recorded and scored, so the sender is told "stored" only
// then; an error (the store cannot record it now) makes the SCP answer "out of resources" and
// the sender keeps the image and sends it again.
type DICOMStore struct {
	Processor Processor
	Metrics   *Metrics         // nil: not counted
	Logger    *slog.Logger     // nil: slog.Default()
	Now       func() time.Time // nil: time.Now
}

// Store implements dicom.StoreHandler.
func (d DICOMStore) Store(ctx context.Context, req dicom.StoreRequest) error {
	now, log := time.Now, d.Logger
	if d.Now != nil {
		now = d.Now
	}
	if log == nil {
		log = slog.Default()
	}
	d.Metrics.received(SourceDICOM)
	// Scored even if the sender hangs up meanwhile: the input is being recorded, and an
	// instance sent again is recognised by its bytes and answered from the store.
	res, err := d.Processor.Process(context.WithoutCancel(ctx), Input{
		Source: SourceDICOM, Name: req.SOPInstanceUID, Format: FormatDICOM, Data: req.File, ReceivedAt: now(),
	})
	if err != nil {
		return err
	}
	log.Info("DICOM instance scored", "calling_ae", req.CallingAE, "id", res.ID, "label", res.Label, "reason", res.Reason)
	return nil
}
