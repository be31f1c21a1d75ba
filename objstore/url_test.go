package objstore

import (
	"strings"
	"testing"
)

func TestParseLocation(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Location
		err  string
	}{
		{in: "s3://logs/finelog/east", want: Location{Bucket: "logs", Prefix: "finelog/east/", Endpoint: "s3.amazonaws.com", Secure: true, Region: "us-east-1"}},
		{in: "s3://logs?region=eu-west-1", want: Location{Bucket: "logs", Endpoint: "s3.amazonaws.com", Secure: true, Region: "eu-west-1"}},
		{in: "s3://logs/p?endpoint=http://127.0.0.1:9000&region=us-east-1", want: Location{Bucket: "logs", Prefix: "p/", Endpoint: "127.0.0.1:9000", Region: "us-east-1", PathStyle: true}},
		{in: "s3://logs/p?endpoint=https://storage.googleapis.com&path_style=false", want: Location{Bucket: "logs", Prefix: "p/", Endpoint: "storage.googleapis.com", Secure: true, Region: "us-east-1"}},
		{in: "gs://logs", err: "scheme must be s3://"},
		{in: "s3://", err: "bucket name is missing"},
		{in: "s3://Logs", err: "lowercase"},
		{in: "s3://logs?endpoint=127.0.0.1:9000", err: "endpoint must be http://"},
		{in: "s3://logs?endpoint=http://h:1/x", err: "must not have a path"},
		{in: "s3://logs?regon=x", err: `unknown parameter "regon"`},
		{in: "s3://logs?path_style=yes", err: "path_style must be true or false"},
		{in: "s3://AKIA:hunter2secret@logs", err: "credentials do not belong in the URL"},
	} {
		got, err := ParseLocation(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseLocation(%q) error = %v, want it to contain %q", tc.in, err, tc.err)
			}
			if err != nil && strings.Contains(err.Error(), "hunter2") {
				t.Errorf("ParseLocation(%q) error leaks the secret: %v", tc.in, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseLocation(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
}
