package objstore

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"
)

// testBucket checks the Bucket contract every implementation must keep;
// it runs against MemBucket, gofakes3 and (when present) versitygw.
func testBucket(t *testing.T, b Bucket) {
	ctx := context.Background()
	data := bytes.Repeat([]byte("0123456789abcdef"), 100_000) // 1.6 MB: more than one block
	size, sum, _ := SumOf(bytes.NewReader(data))
	info, err := b.Put(ctx, "segments/a.parquet", bytes.NewReader(data), size, sum)
	if err != nil {
		t.Fatalf("put: %v", err)
	}
	if info.Size != size || info.ETag != sum.MD5Hex() {
		t.Fatalf("put info = %+v, want size %d etag %s", info, size, sum.MD5Hex())
	}
	st, err := b.Stat(ctx, "segments/a.parquet")
	if err != nil || st.Size != size || st.SHA256 != sum.SHA256Hex() {
		t.Fatalf("stat = %+v, %v; want the SHA-256 metadata kept", st, err)
	}
	rc, err := b.GetRange(ctx, "segments/a.parquet", 1_000_003, 70_000)
	if err != nil {
		t.Fatalf("get range: %v", err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(got, data[1_000_003:1_070_003]) {
		t.Fatalf("ranged get returned %d bytes (err %v), not the requested range", len(got), err)
	}
	if _, err := b.Stat(ctx, "segments/missing"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("stat of a missing object: %v, want ErrNotFound", err)
	}
	if _, err := b.GetRange(ctx, "segments/missing", 0, 10); !errors.Is(err, ErrNotFound) {
		t.Fatalf("get of a missing object: %v, want ErrNotFound", err)
	}
	small := []byte("manifest")
	ssize, ssum, _ := SumOf(bytes.NewReader(small))
	if _, err := b.Put(ctx, "manifest/1.json", bytes.NewReader(small), ssize, ssum); err != nil {
		t.Fatal(err)
	}
	list, err := b.List(ctx, "segments/")
	if err != nil || len(list) != 1 || list[0].Name != "segments/a.parquet" || list[0].Size != size {
		t.Fatalf("list segments/ = %+v, %v", list, err)
	}
	if err := b.Delete(ctx, "segments/a.parquet"); err != nil {
		t.Fatal(err)
	}
	if err := b.Delete(ctx, "segments/a.parquet"); err != nil {
		t.Fatalf("deleting a missing object: %v", err)
	}
	if list, _ := b.List(ctx, "segments/"); len(list) != 0 {
		t.Fatalf("list after delete = %+v", list)
	}
}

func TestMemBucketContract(t *testing.T) { testBucket(t, NewMemBucket("b")) }
