package objstore

import (
	"bufio"
	"bytes"
	"fmt"
	"strings"
)

// Secret holds a credential. Every way of formatting it prints
// "REDACTED", so a Secret in a config dump or a log line leaks nothing.
type Secret struct{ v string }

// NewSecret wraps s.
func NewSecret(s string) Secret { return Secret{v: s} }

// Reveal returns the value, for the one place that signs requests.
func (s Secret) Reveal() string { return s.v }

// Empty reports whether no value was set.
func (s Secret) Empty() bool { return s.v == "" }

func (s Secret) String() string {
	if s.v == "" {
		return ""
	}
	return "REDACTED"
}

// GoString keeps %#v from printing the field.
func (s Secret) GoString() string { return `objstore.Secret("` + s.String() + `")` }

// MarshalJSON redacts.
func (s Secret) MarshalJSON() ([]byte, error) { return []byte(`"` + s.String() + `"`), nil }

// MarshalText redacts (encoding/json map keys, yaml, flag printing).
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Credentials sign requests to the bucket.
type Credentials struct {
	AccessKeyID     string
	SecretAccessKey Secret
	SessionToken    Secret
}

// Anonymous reports whether no access key is set (public buckets only).
func (c Credentials) Anonymous() bool { return c.AccessKeyID == "" }

// CredentialsFromEnv reads the standard AWS variables through getenv.
func CredentialsFromEnv(getenv func(string) string) (Credentials, error) {
	c := Credentials{
		AccessKeyID:     getenv("AWS_ACCESS_KEY_ID"),
		SecretAccessKey: NewSecret(getenv("AWS_SECRET_ACCESS_KEY")),
		SessionToken:    NewSecret(getenv("AWS_SESSION_TOKEN")),
	}
	if (c.AccessKeyID == "") != c.SecretAccessKey.Empty() {
		return Credentials{}, fmt.Errorf("AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY must be set together (one of them is empty)")
	}
	return c, nil
}

// ParseCredentialsFile reads an AWS shared credentials file (INI:
// [profile] then aws_access_key_id / aws_secret_access_key /
// aws_session_token) and returns profile's keys. name is only for messages;
// no value from the file ever appears in an error.
func ParseCredentialsFile(name string, data []byte, profile string) (Credentials, error) {
	if profile == "" {
		profile = "default"
	}
	var c Credentials
	found := false
	section := ""
	sc := bufio.NewScanner(bytes.NewReader(data))
	line := 0
	for sc.Scan() {
		line++
		t := strings.TrimSpace(sc.Text())
		if t == "" || t[0] == '#' || t[0] == ';' {
			continue
		}
		if t[0] == '[' {
			if !strings.HasSuffix(t, "]") {
				return Credentials{}, fmt.Errorf("credentials file %s line %d: section header must end with ]", name, line)
			}
			section = strings.TrimSpace(strings.TrimPrefix(t[1:len(t)-1], "profile "))
			if section == profile {
				found = true
			}
			continue
		}
		k, v, ok := strings.Cut(t, "=")
		if !ok {
			return Credentials{}, fmt.Errorf("credentials file %s line %d: want key = value", name, line)
		}
		if section != profile {
			continue
		}
		k, v = strings.ToLower(strings.TrimSpace(k)), strings.TrimSpace(v)
		switch k {
		case "aws_access_key_id":
			c.AccessKeyID = v
		case "aws_secret_access_key":
			c.SecretAccessKey = NewSecret(v)
		case "aws_session_token":
			c.SessionToken = NewSecret(v)
		}
	}
	if err := sc.Err(); err != nil {
		return Credentials{}, fmt.Errorf("credentials file %s: %v", name, err)
	}
	if !found {
		return Credentials{}, fmt.Errorf("credentials file %s: no [%s] profile", name, profile)
	}
	if c.AccessKeyID == "" || c.SecretAccessKey.Empty() {
		return Credentials{}, fmt.Errorf("credentials file %s: profile [%s] needs both aws_access_key_id and aws_secret_access_key", name, profile)
	}
	return c, nil
}
