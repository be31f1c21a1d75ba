package objstore

import (
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
)

// Sum is what Put verifies an upload against: the SHA-256 (recorded in the
// manifest and as object metadata) and the MD5 (which S3 and most
// compatible servers report as the ETag of a single-part upload, computed
// by the server from the bytes it stored).
type Sum struct {
	SHA256 [sha256.Size]byte
	MD5    [md5.Size]byte
}

// SHA256Hex returns the SHA-256 in hex.
func (s Sum) SHA256Hex() string { return hex.EncodeToString(s.SHA256[:]) }

// MD5Hex returns the MD5 in hex (the expected ETag).
func (s Sum) MD5Hex() string { return hex.EncodeToString(s.MD5[:]) }

// SumOf reads r to the end and returns its size and Sum.
func SumOf(r io.Reader) (int64, Sum, error) {
	h, m := sha256.New(), md5.New()
	n, err := io.Copy(io.MultiWriter(h, m), r)
	if err != nil {
		return n, Sum{}, fmt.Errorf("checksum: %w", err)
	}
	var s Sum
	copy(s.SHA256[:], h.Sum(nil))
	copy(s.MD5[:], m.Sum(nil))
	return n, s, nil
}

// verifyStored checks a stored object's info against the local size and sum.
// The ETag is compared only when it is a plain MD5 (single-part upload
// without SSE-KMS); the SHA-256 metadata only when the server kept it.
func verifyStored(info ObjectInfo, size int64, sum Sum) error {
	if info.Size != size {
		return fmt.Errorf("%w: stored %d bytes, uploaded %d", ErrVerify, info.Size, size)
	}
	if isPlainMD5(info.ETag) && info.ETag != sum.MD5Hex() {
		return fmt.Errorf("%w: stored ETag %s, local MD5 %s", ErrVerify, info.ETag, sum.MD5Hex())
	}
	if info.SHA256 != "" && info.SHA256 != sum.SHA256Hex() {
		return fmt.Errorf("%w: stored SHA-256 %s, local %s", ErrVerify, info.SHA256, sum.SHA256Hex())
	}
	if !isPlainMD5(info.ETag) && info.SHA256 == "" {
		return fmt.Errorf("%w: the server reports neither an MD5 ETag nor the SHA-256 metadata, so the upload cannot be checked", ErrVerify)
	}
	return nil
}

func isPlainMD5(etag string) bool {
	if len(etag) != 2*md5.Size {
		return false
	}
	_, err := hex.DecodeString(etag)
	return err == nil
}
