package dicom

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"strings"
)

// KeyedHash returns a pseudonym for a DICOM UID (study, series, ...) that can leave the device:
// HMAC-SHA256 keyed with key over the UID (trailing NUL/space padding removed), as the first
// 32 hex digits (128 bits, ample against collisions between studies). Devices sharing the key
// give the same pseudonym for the same study, so results correlate across devices, while the UID
// cannot be recovered or confirmed by guessing without the key. An empty UID gives "" so that an
// absent identifier stays absent.
//
// The caller owns the key: the daemon generates at least 32 random bytes once (crypto/rand),
// stores them with 0600 permissions beside its state, and shares the same key with the devices
// whose results must correlate. KeyedHash does not check the key; an empty key gives a plain,
// guessable hash.
func KeyedHash(key []byte, uid string) string {
	uid = strings.TrimRight(uid, " \x00")
	if uid == "" {
		return ""
	}
	m := hmac.New(sha256.New, key)
	m.Write([]byte(uid))
	return hex.EncodeToString(m.Sum(nil))[:32]
}
