package objstore

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

func TestSecretNeverFormats(t *testing.T) {
	c := Credentials{AccessKeyID: "AKIAEXAMPLE", SecretAccessKey: NewSecret("wJalrXUtnFEMIsecretvalue"), SessionToken: NewSecret("tok-secret-value")}
	j, _ := json.Marshal(c)
	for _, s := range []string{fmt.Sprint(c), fmt.Sprintf("%v %+v %#v %s", c, c, c, c.SecretAccessKey), string(j)} {
		if strings.Contains(s, "secretvalue") || strings.Contains(s, "secret-value") {
			t.Fatalf("secret printed: %s", s)
		}
		if !strings.Contains(s, "REDACTED") {
			t.Fatalf("no redaction marker in %s", s)
		}
	}
	if c.SecretAccessKey.Reveal() != "wJalrXUtnFEMIsecretvalue" {
		t.Fatal("Reveal lost the value")
	}
}

func TestCredentialsFromEnv(t *testing.T) {
	env := map[string]string{"AWS_ACCESS_KEY_ID": "id", "AWS_SECRET_ACCESS_KEY": "sk"}
	c, err := CredentialsFromEnv(func(k string) string { return env[k] })
	if err != nil || c.AccessKeyID != "id" || c.SecretAccessKey.Reveal() != "sk" {
		t.Fatalf("got %v, %v", c, err)
	}
	delete(env, "AWS_SECRET_ACCESS_KEY")
	if _, err := CredentialsFromEnv(func(k string) string { return env[k] }); err == nil || !strings.Contains(err.Error(), "must be set together") {
		t.Fatalf("half-set credentials: err = %v", err)
	}
}

func TestParseCredentialsFile(t *testing.T) {
	file := []byte("# comment\n[default]\naws_access_key_id = AKIADEF\naws_secret_access_key = defsecretvalue\n\n[profile prod]\naws_access_key_id=AKIAPROD\naws_secret_access_key=prodsecretvalue\naws_session_token=tok\n")
	c, err := ParseCredentialsFile("creds", file, "")
	if err != nil || c.AccessKeyID != "AKIADEF" || c.SecretAccessKey.Reveal() != "defsecretvalue" {
		t.Fatalf("default: %v %v", c, err)
	}
	c, err = ParseCredentialsFile("creds", file, "prod")
	if err != nil || c.AccessKeyID != "AKIAPROD" || c.SessionToken.Reveal() != "tok" {
		t.Fatalf("prod: %v %v", c, err)
	}
	for _, tc := range []struct{ data, profile, want string }{
		{"[default]\naws_access_key_id=x\n", "", "needs both"},
		{"[other]\naws_access_key_id=x\naws_secret_access_key=topsecretvalue\n", "", "no [default] profile"},
		{"[default\n", "", "must end with ]"},
		{"[default]\naws_secret_access_key topsecretvalue\n", "", "want key = value"},
	} {
		_, err := ParseCredentialsFile("creds", []byte(tc.data), tc.profile)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: err = %v, want %q", tc.data, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "topsecretvalue") {
			t.Errorf("error leaks secret: %v", err)
		}
	}
}
