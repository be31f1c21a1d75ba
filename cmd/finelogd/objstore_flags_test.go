package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestObjectStoreFlagsNeverPrintSecrets(t *testing.T) {
	const secret = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYSECRET"
	env := map[string]string{"AWS_ACCESS_KEY_ID": "AKIAEXAMPLE", "AWS_SECRET_ACCESS_KEY": secret}
	getenv := func(k string) string { return env[k] }
	var out, errb bytes.Buffer
	dir := t.TempDir()
	code := run([]string{"--data-dir", dir, "--object-store", "s3://logs/east?endpoint=http://127.0.0.1:9000", "--print-config"}, getenv, &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	if strings.Contains(out.String()+errb.String(), secret) {
		t.Fatal("--print-config printed the secret access key")
	}
	if !strings.Contains(out.String(), `"url": "s3://logs/east?endpoint=http://127.0.0.1:9000"`) || !strings.Contains(out.String(), "redacted") {
		t.Fatalf("--print-config does not describe the object store: %s", out.String())
	}

	credFile := filepath.Join(dir, "creds")
	os.WriteFile(credFile, []byte("[default]\naws_access_key_id = AKIAFILE\naws_secret_access_key = "+secret+"\n"), 0o600)
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"--object-store", "s3://logs", "--print-config"}, map[string]string{"AWS_ACCESS_KEY_ID": "AKIA"}, "must be set together"},
		{[]string{"--object-store-credentials-file", credFile, "--print-config"}, nil, "need --object-store"},
		{[]string{"--object-store", "gs://logs"}, nil, "scheme must be s3://"},
	} {
		out.Reset()
		errb.Reset()
		code := run(append([]string{"--data-dir", dir}, tc.args...), func(k string) string { return tc.env[k] }, &out, &errb)
		if code == 0 || !strings.Contains(errb.String(), tc.want) {
			t.Errorf("%q: exit %d stderr %q; want failure naming %q", tc.args, code, errb.String(), tc.want)
		}
		if strings.Contains(out.String()+errb.String(), secret) {
			t.Errorf("%q printed the secret", tc.args)
		}
	}
}
