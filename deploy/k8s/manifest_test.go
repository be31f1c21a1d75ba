// Package k8s holds finelog's Kubernetes manifests; this test parses every
// one and checks the rules an operator relies on: secrets only ever come
// from Secret objects (never inline, never in a ConfigMap or env value), a
// jwt policy layer with an inline secret is refused, probes use /health and
// /health/relay, and the data dir is a PersistentVolumeClaim.
package k8s

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// doc is one parsed manifest document.
type doc struct {
	file string
	m    map[string]any
}

func (d doc) kind() string { return str(d.m, "kind") }
func (d doc) name() string { return str(get(d.m, "metadata"), "name") }
func (d doc) String() string {
	return fmt.Sprintf("%s: %s %s", d.file, d.kind(), d.name())
}

func loadManifests(t *testing.T) []doc {
	t.Helper()
	files, err := filepath.Glob("*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests found: %v", err)
	}
	var docs []doc
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(b))
		for {
			var m map[string]any
			err := dec.Decode(&m)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			if m != nil {
				docs = append(docs, doc{file: f, m: m})
			}
		}
	}
	return docs
}

func get(v any, key string) map[string]any {
	m, _ := v.(map[string]any)
	out, _ := m[key].(map[string]any)
	return out
}

func list(v any, key string) []any {
	m, _ := v.(map[string]any)
	out, _ := m[key].([]any)
	return out
}

func str(v any, key string) string {
	m, _ := v.(map[string]any)
	s, _ := m[key].(string)
	return s
}

// secretish names a value that must come from a Secret.
var secretish = regexp.MustCompile(`(?i)(key|psk|secret|token|password)`)

// containerArgs maps --flag to its value for args written --flag=value.
func containerArgs(c map[string]any) map[string]string {
	out := map[string]string{}
	for _, a := range list(c, "args") {
		s, _ := a.(string)
		if k, v, ok := strings.Cut(s, "="); ok && strings.HasPrefix(k, "--") {
			out[k] = v
		}
	}
	return out
}

// mountSource is where the file at path comes from in a pod: the volume
// kind ("secret", "configMap", "pvc", ...) and, for a ConfigMap, its name
// and the key of the file.
type mountSource struct {
	kind, name, key string
}

func sourceOf(podSpec, c map[string]any, pvcs map[string]bool, path string) (mountSource, bool) {
	best := ""
	var src mountSource
	for _, vm := range list(c, "volumeMounts") {
		mp := str(vm, "mountPath")
		if !(path == mp || strings.HasPrefix(path, strings.TrimRight(mp, "/")+"/")) || len(mp) <= len(best) {
			continue
		}
		best = mp
		vol := str(vm, "name")
		key := strings.TrimPrefix(strings.TrimPrefix(path, mp), "/")
		src = mountSource{kind: "unknown", name: vol, key: key}
		if pvcs[vol] {
			src.kind = "pvc"
		}
		for _, v := range list(podSpec, "volumes") {
			if str(v, "name") != vol {
				continue
			}
			switch {
			case get(v, "secret") != nil:
				src = mountSource{kind: "secret", name: str(get(v, "secret"), "secretName"), key: key}
			case get(v, "configMap") != nil:
				src = mountSource{kind: "configMap", name: str(get(v, "configMap"), "name"), key: key}
			default:
				src.kind = "other"
			}
		}
	}
	return src, best != ""
}

// checkManifests returns every rule the documents break.
func checkManifests(docs []doc) []error {
	var errs []error
	fail := func(d doc, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", d, fmt.Sprintf(format, args...)))
	}
	configMaps := map[string]map[string]any{}
	for _, d := range docs {
		switch d.kind() {
		case "Secret":
			// Secrets are created by the operator (README.md), never
			// committed with their bytes.
			if get(d.m, "data") != nil || get(d.m, "stringData") != nil {
				fail(d, "a Secret with data in the manifests: secrets must never be committed")
			}
		case "ConfigMap":
			configMaps[d.name()] = get(d.m, "data")
		}
	}
	for _, d := range docs {
		if d.kind() != "StatefulSet" {
			continue
		}
		spec := get(d.m, "spec")
		podSpec := get(get(spec, "template"), "spec")
		pvcs := map[string]bool{}
		for _, vct := range list(spec, "volumeClaimTemplates") {
			pvcs[str(get(vct, "metadata"), "name")] = true
		}
		containers := list(podSpec, "containers")
		if len(containers) == 0 {
			fail(d, "no containers")
		}
		for _, ci := range containers {
			c, _ := ci.(map[string]any)
			args := containerArgs(c)

			dataDir := args["--data-dir"]
			if src, ok := sourceOf(podSpec, c, pvcs, dataDir); dataDir == "" || !ok || src.kind != "pvc" {
				fail(d, "--data-dir %q is not on a PersistentVolumeClaim (volumeClaimTemplates)", dataDir)
			}

			// Probes: only the health routes, /health among them, and
			// /health/relay on a store that relays.
			paths := map[string]bool{}
			for _, p := range []string{"startupProbe", "readinessProbe", "livenessProbe"} {
				if pr := get(c, p); pr != nil {
					path := str(get(pr, "httpGet"), "path")
					if path != "/health" && path != "/health/relay" {
						fail(d, "%s probes %q: probe /health or /health/relay (every other route is gated)", p, path)
					}
					paths[path] = true
				}
			}
			if !paths["/health"] || get(c, "readinessProbe") == nil {
				fail(d, "no readiness probe on /health")
			}
			if args["--relay-address"] != "" && !paths["/health/relay"] {
				fail(d, "relays (--relay-address) but no probe on /health/relay")
			}

			// Secrets in env: only by secretKeyRef.
			for _, e := range list(c, "env") {
				name := str(e, "name")
				if name == "FINELOG_AUTH_POLICY" {
					if v := str(e, "value"); v != "" {
						errs = append(errs, checkPolicy(d, "env FINELOG_AUTH_POLICY", v, podSpec, c, pvcs)...)
					}
					continue
				}
				if secretish.MatchString(name) && get(get(e, "valueFrom"), "secretKeyRef") == nil {
					fail(d, "env %s looks secret but is not from a Secret (valueFrom.secretKeyRef)", name)
				}
			}
			// Secrets in flags: only as files from a Secret volume.
			for k, v := range args {
				if !secretish.MatchString(k) {
					continue
				}
				if !strings.HasSuffix(k, "-file") {
					fail(d, "flag %s passes a secret on the command line: pass a file from a Secret", k)
					continue
				}
				if src, ok := sourceOf(podSpec, c, pvcs, v); !ok || src.kind != "secret" {
					fail(d, "flag %s=%s: the file is not from a Secret volume (%s)", k, v, src.kind)
				}
			}
			if pf := args["--auth-policy-file"]; pf != "" {
				src, ok := sourceOf(podSpec, c, pvcs, pf)
				switch {
				case !ok || src.kind != "configMap":
					fail(d, "--auth-policy-file %s is not from a ConfigMap in these manifests, so it cannot be checked", pf)
				case configMaps[src.name] == nil || str(configMaps[src.name], src.key) == "":
					fail(d, "--auth-policy-file %s: ConfigMap %s has no key %q", pf, src.name, src.key)
				default:
					errs = append(errs, checkPolicy(d, "ConfigMap "+src.name+" "+src.key, str(configMaps[src.name], src.key), podSpec, c, pvcs)...)
				}
			}
		}
	}
	return errs
}

// checkPolicy refuses a jwt layer with an inline secret (as the existing
// system does when rendering a manifest) and a secret_file that is not from
// a Secret volume.
func checkPolicy(d doc, where, policy string, podSpec, c map[string]any, pvcs map[string]bool) []error {
	var layers []struct {
		Type string `json:"type"`
		Keys []struct {
			Cluster    string  `json:"cluster"`
			Secret     *string `json:"secret"`
			SecretFile string  `json:"secret_file"`
		} `json:"keys"`
	}
	if err := json.Unmarshal([]byte(policy), &layers); err != nil {
		return []error{fmt.Errorf("%s: %s: policy is not valid JSON: %v", d, where, err)}
	}
	var errs []error
	for i, l := range layers {
		if l.Type != "jwt" {
			continue
		}
		for _, k := range l.Keys {
			if k.Secret != nil {
				errs = append(errs, fmt.Errorf("%s: %s: layer %d (jwt) key %q has an inline secret: use secret_file from a Secret", d, where, i+1, k.Cluster))
				continue
			}
			if src, ok := sourceOf(podSpec, c, pvcs, k.SecretFile); !ok || src.kind != "secret" {
				errs = append(errs, fmt.Errorf("%s: %s: layer %d (jwt) key %q: secret_file %q is not from a Secret volume", d, where, i+1, k.Cluster, k.SecretFile))
			}
		}
	}
	return errs
}

func TestManifestsFollowTheRules(t *testing.T) {
	docs := loadManifests(t)
	for _, err := range checkManifests(docs) {
		t.Error(err)
	}
	// One StatefulSet per cluster store and one for the global store.
	stores := map[string]bool{}
	for _, d := range docs {
		if d.kind() == "StatefulSet" {
			stores[d.name()] = true
		}
	}
	for _, want := range []string{"finelog-global", "finelog-east", "finelog-west"} {
		if !stores[want] {
			t.Errorf("no StatefulSet %s (have %v)", want, stores)
		}
	}
}

// The checker must catch each thing it exists for: break a copy of the
// manifests one way at a time.
func TestManifestCheckRefusesBrokenManifests(t *testing.T) {
	east := func(docs []doc) (cm, sts map[string]any) {
		for _, d := range docs {
			if d.name() == "finelog-east-policy" {
				cm = d.m
			}
			if d.name() == "finelog-east" && d.kind() == "StatefulSet" {
				sts = d.m
			}
		}
		return cm, sts
	}
	container := func(sts map[string]any) map[string]any {
		c, _ := list(get(get(get(sts, "spec"), "template"), "spec"), "containers")[0].(map[string]any)
		return c
	}
	for _, tc := range []struct {
		name   string
		mutate func(docs []doc) []doc
		want   string
	}{
		{"jwt layer with an inline secret", func(docs []doc) []doc {
			cm, _ := east(docs)
			get(cm, "data")["policy.json"] = `[{"type":"jwt","keys":[{"cluster":"east","secret":"0123456789abcdef0123456789abcdef"}]}]`
			return docs
		}, "inline secret"},
		{"inline policy env with an inline secret", func(docs []doc) []doc {
			_, sts := east(docs)
			c := container(sts)
			c["env"] = []any{map[string]any{"name": "FINELOG_AUTH_POLICY", "value": `[{"type":"jwt","keys":[{"cluster":"east","secret":"0123456789abcdef0123456789abcdef"}]}]`}}
			return docs
		}, "inline secret"},
		{"key file from a ConfigMap", func(docs []doc) []doc {
			cm, _ := east(docs)
			get(cm, "data")["policy.json"] = `[{"type":"jwt","keys":[{"cluster":"east","secret_file":"/etc/finelog/policy/east.key"}]}]`
			return docs
		}, "not from a Secret volume"},
		{"relay key file outside a Secret", func(docs []doc) []doc {
			_, sts := east(docs)
			c := container(sts)
			c["args"] = append(list(c, "args"), "--relay-key-file=/var/lib/finelog/east.key")
			return docs
		}, "--relay-key-file"},
		{"secret in an env value", func(docs []doc) []doc {
			_, sts := east(docs)
			container(sts)["env"] = []any{map[string]any{"name": "FINELOG_PEER_PSK", "value": "hunter2"}}
			return docs
		}, "FINELOG_PEER_PSK"},
		{"committed Secret", func(docs []doc) []doc {
			return append(docs, doc{file: "x.yaml", m: map[string]any{"kind": "Secret", "metadata": map[string]any{"name": "k"}, "data": map[string]any{"east.key": "c2VjcmV0"}}})
		}, "never be committed"},
		{"probe on a gated route", func(docs []doc) []doc {
			_, sts := east(docs)
			get(container(sts), "readinessProbe")["httpGet"] = map[string]any{"path": "/metrics", "port": "http"}
			return docs
		}, "/metrics"},
		{"relaying store without a relay probe", func(docs []doc) []doc {
			_, sts := east(docs)
			delete(container(sts), "livenessProbe")
			return docs
		}, "/health/relay"},
		{"data dir not on a PVC", func(docs []doc) []doc {
			_, sts := east(docs)
			delete(get(sts, "spec"), "volumeClaimTemplates")
			return docs
		}, "PersistentVolumeClaim"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			docs := tc.mutate(loadManifests(t))
			errs := checkManifests(docs)
			for _, err := range errs {
				if strings.Contains(err.Error(), tc.want) {
					return
				}
			}
			t.Fatalf("checker did not refuse it (want an error containing %q); got %v", tc.want, errs)
		})
	}
}

// The manifests' flags must be flags finelogd has: a typo would only show
// as a crash-looping pod.
func TestManifestFlagsExist(t *testing.T) {
	src, err := os.ReadFile("../../cmd/finelogd/main.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range loadManifests(t) {
		if d.kind() != "StatefulSet" {
			continue
		}
		for _, ci := range list(get(get(get(d.m, "spec"), "template"), "spec"), "containers") {
			c, _ := ci.(map[string]any)
			for flag := range containerArgs(c) {
				if !bytes.Contains(src, []byte(`"`+strings.TrimPrefix(flag, "--")+`"`)) {
					t.Errorf("%s: flag %s is not defined in cmd/finelogd", d, flag)
				}
			}
		}
	}
}
