package objstore

import (
	"fmt"
	"net/url"
	"strings"
)

// Location is a parsed --object-store URL:
// s3://BUCKET/PREFIX?endpoint=http://127.0.0.1:9000&region=us-east-1.
type Location struct {
	Bucket string
	// Prefix is the key prefix every object name is put under, "" or
	// ending in "/".
	Prefix string
	// Endpoint is host[:port] of the server; Secure says https.
	Endpoint string
	Secure   bool
	Region   string
	// PathStyle addresses the bucket in the path (http://host/bucket/key),
	// which S3-compatible servers need; AWS itself uses virtual hosts.
	PathStyle bool
}

// awsEndpoint is used when the URL names no endpoint.
const awsEndpoint = "s3.amazonaws.com"

// ParseLocation parses an --object-store URL. Without endpoint= it means AWS
// S3 over https with virtual-host addressing; with one it means an
// S3-compatible server addressed path-style over the endpoint's scheme.
// path_style=false or true overrides the addressing.
func ParseLocation(raw string) (Location, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return Location{}, fmt.Errorf("--object-store %q: %v", redactURL(raw), err)
	}
	if u.Scheme != "s3" {
		return Location{}, fmt.Errorf("--object-store %q: scheme must be s3:// (for example s3://bucket/prefix?endpoint=http://127.0.0.1:9000)", redactURL(raw))
	}
	if u.User != nil {
		return Location{}, fmt.Errorf("--object-store: credentials do not belong in the URL; use AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or --object-store-credentials-file")
	}
	if u.Host == "" {
		return Location{}, fmt.Errorf("--object-store %q: bucket name is missing (s3://BUCKET/PREFIX)", raw)
	}
	if err := checkBucketName(u.Host); err != nil {
		return Location{}, fmt.Errorf("--object-store %q: %v", raw, err)
	}
	loc := Location{Bucket: u.Host, Endpoint: awsEndpoint, Secure: true, Region: "us-east-1"}
	loc.Prefix = strings.Trim(u.Path, "/")
	if loc.Prefix != "" {
		loc.Prefix += "/"
	}
	q := u.Query()
	for k := range q {
		switch k {
		case "endpoint", "region", "path_style":
		default:
			return Location{}, fmt.Errorf("--object-store %q: unknown parameter %q (known: endpoint, region, path_style)", raw, k)
		}
	}
	if r := q.Get("region"); r != "" {
		loc.Region = r
	}
	if ep := q.Get("endpoint"); ep != "" {
		e, err := url.Parse(ep)
		if err != nil || e.Host == "" || (e.Scheme != "http" && e.Scheme != "https") {
			return Location{}, fmt.Errorf("--object-store %q: endpoint must be http://HOST[:PORT] or https://HOST[:PORT], got %q", raw, ep)
		}
		if e.Path != "" && e.Path != "/" {
			return Location{}, fmt.Errorf("--object-store %q: endpoint %q must not have a path; put the prefix after the bucket", raw, ep)
		}
		loc.Endpoint, loc.Secure, loc.PathStyle = e.Host, e.Scheme == "https", true
	}
	switch q.Get("path_style") {
	case "":
	case "true":
		loc.PathStyle = true
	case "false":
		loc.PathStyle = false
	default:
		return Location{}, fmt.Errorf("--object-store %q: path_style must be true or false", raw)
	}
	return loc, nil
}

// String renders the location as a URL (it never holds credentials).
func (l Location) String() string {
	s := "s3://" + l.Bucket + "/" + l.Prefix
	if l.Endpoint != awsEndpoint {
		scheme := "http"
		if l.Secure {
			scheme = "https"
		}
		s += "?endpoint=" + scheme + "://" + l.Endpoint
	}
	return s
}

func checkBucketName(b string) error {
	if len(b) < 3 || len(b) > 63 {
		return fmt.Errorf("bucket name %q must be 3 to 63 characters", b)
	}
	for _, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return fmt.Errorf("bucket name %q may hold only lowercase letters, digits, '-' and '.'", b)
		}
	}
	return nil
}

// redactURL drops any userinfo so a mistaken s3://KEY:SECRET@bucket is not
// echoed back into a log.
func redactURL(raw string) string {
	if i := strings.Index(raw, "@"); i >= 0 {
		if j := strings.Index(raw, "://"); j >= 0 && j < i {
			return raw[:j+3] + "REDACTED@" + raw[i+1:]
		}
		return "REDACTED"
	}
	return raw
}
