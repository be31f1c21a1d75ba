package auth

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/finelog/finelog/internal/clock"
	"github.com/finelog/finelog/internal/vfs"
)

type conformanceFile struct {
	Now      int64                      `json:"now"`
	Secrets  map[string]string          `json:"secrets"`
	Policies map[string]json.RawMessage `json:"policies"`
	Cases    []conformanceCase          `json:"cases"`
}

type conformanceCase struct {
	Name    string            `json:"name"`
	Policy  string            `json:"policy"`
	Peer    string            `json:"peer"`
	Headers map[string]string `json:"headers"`
	Token   tokenSpec         `json:"token"`
	Expect  struct {
		Admitted bool   `json:"admitted"`
		Code     string `json:"code"`
		Layer    int    `json:"layer"`
		Cluster  string `json:"cluster"`
		CIDR     string `json:"cidr"`
		Cause    string `json:"cause"`
	} `json:"expect"`
}

// tokenSpec describes the credential a case presents.
type tokenSpec struct {
	Kind       string         `json:"kind"` // missing, valid, expired, none, raw, basic, minted, pyjwt
	Key        string         `json:"key"`
	Alg        string         `json:"alg"`
	Header     map[string]any `json:"header"`
	Claims     map[string]any `json:"claims"` // null deletes a default claim
	ExpOffset  *int64         `json:"exp_offset"`
	Raw        *string        `json:"raw"`
	Scheme     string         `json:"scheme"`
	HeaderName string         `json:"header_name"`
	Pad        bool           `json:"pad"`
	Twice      bool           `json:"twice"`
	SigTweak   string         `json:"sig_tweak"`
}

func loadConformance(t *testing.T) conformanceFile {
	t.Helper()
	data, err := os.ReadFile("testdata/conformance.json")
	if err != nil {
		t.Fatal(err)
	}
	var cf conformanceFile
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	var withComment struct {
		Comment string `json:"comment"`
		conformanceFile
	}
	if err := dec.Decode(&withComment); err != nil {
		t.Fatalf("conformance.json: %v", err)
	}
	cf = withComment.conformanceFile
	if len(cf.Cases) == 0 {
		t.Fatal("conformance.json has no cases")
	}
	return cf
}

// buildHeaders turns a token spec into request headers.
func buildHeaders(t *testing.T, cf conformanceFile, ts tokenSpec) http.Header {
	t.Helper()
	now := cf.Now
	h := http.Header{}
	tok := ""
	switch ts.Kind {
	case "missing":
		return h
	case "basic":
		h.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte("user:pass")))
		return h
	case "raw":
		tok = *ts.Raw
	case "minted":
		var err error
		tok, err = Mint(Secret(cf.Secrets[ts.Key]), ts.Key, time.Hour, "", time.Unix(now-5, 0))
		if err != nil {
			t.Fatal(err)
		}
	case "pyjwt":
		// What PyJWT 2.x emits for jwt.encode({"sub": ..., "exp": ...},
		// secret, algorithm="HS256"): header keys sorted, compact
		// separators, HMAC-SHA256 over the raw secret bytes.
		header := `{"alg":"HS256","typ":"JWT"}`
		payload := `{"sub":"` + ts.Key + `","iat":` + itoa64(now-5) + `,"exp":` + itoa64(now+600) + `}`
		tok = forgeRaw([]byte(header), []byte(payload), "HS256", []byte(cf.Secrets[ts.Key]))
	case "valid", "expired", "none":
		alg := "HS256"
		if ts.Alg != "" {
			alg = ts.Alg
		}
		header := map[string]any{"alg": alg, "typ": "JWT"}
		for k, v := range ts.Header {
			header[k] = v
		}
		exp := now + 3600
		if ts.Kind == "expired" {
			exp = now - 3600
		}
		if ts.ExpOffset != nil {
			exp = now + *ts.ExpOffset
		}
		payload := map[string]any{"sub": ts.Key, "iat": now - 10, "exp": exp}
		for k, v := range ts.Claims {
			if v == nil {
				delete(payload, k)
				continue
			}
			payload[k] = v
		}
		signAlg := alg
		if ts.Kind == "none" {
			signAlg = ""
		} else if alg != "HS384" && alg != "HS512" {
			signAlg = "HS256"
		}
		tok = forge(t, header, payload, signAlg, []byte(cf.Secrets[ts.Key]))
	default:
		t.Fatalf("unknown token kind %q", ts.Kind)
	}
	parts := strings.Split(tok, ".")
	switch ts.SigTweak {
	case "":
	case "truncate":
		// 43 → 40 chars: 30 bytes that decode cleanly but are short.
		parts[2] = parts[2][:len(parts[2])-3]
	case "trailing_bits":
		// 32 bytes → 43 chars; the last char carries 4 data bits and 2
		// zero pad bits. Setting a pad bit keeps the decoded bytes under a
		// lenient decoder but is invalid under strict decoding.
		last := parts[2][len(parts[2])-1]
		idx := strings.IndexByte(b64Alphabet, last)
		parts[2] = parts[2][:len(parts[2])-1] + string(b64Alphabet[idx|1])
	case "resign_payload":
		// Swap in a payload with a later exp but keep the old signature.
		p, _ := base64.RawURLEncoding.DecodeString(parts[1])
		p = []byte(strings.Replace(string(p), `"exp":`, `"exp":9`, 1))
		parts[1] = base64.RawURLEncoding.EncodeToString(p)
	default:
		t.Fatalf("unknown sig_tweak %q", ts.SigTweak)
	}
	tok = strings.Join(parts, ".")
	if ts.Pad {
		tok = strings.Join(parts, "==.") // padding on every segment but the last
	}
	scheme := "Bearer"
	if ts.Scheme != "" {
		scheme = ts.Scheme
	}
	name := "Authorization"
	if ts.HeaderName != "" {
		name = ts.HeaderName
	}
	h.Add(name, scheme+" "+tok)
	if ts.Twice {
		h.Add(name, scheme+" "+tok)
	}
	return h
}

const b64Alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

func itoa64(n int64) string {
	b, _ := json.Marshal(n)
	return string(b)
}

func TestConformance(t *testing.T) {
	cf := loadConformance(t)
	clk := clock.NewFake(time.Unix(cf.Now, 0))
	policies := map[string]*Policy{}
	for name, raw := range cf.Policies {
		if string(raw) == "null" {
			p, err := Load("", "", vfs.NewMemFS(), clk)
			if err != nil {
				t.Fatal(err)
			}
			policies[name] = p
			continue
		}
		p, err := ParsePolicy(raw, vfs.NewMemFS(), clk)
		if err != nil {
			t.Fatalf("policy %s: %v", name, err)
		}
		policies[name] = p
	}
	for _, tc := range cf.Cases {
		t.Run(tc.Name, func(t *testing.T) {
			p, ok := policies[tc.Policy]
			if !ok {
				t.Fatalf("unknown policy %q", tc.Policy)
			}
			h := buildHeaders(t, cf, tc.Token)
			for k, v := range tc.Headers {
				h.Set(k, v)
			}
			v := p.Admit(tc.Peer, h)
			e := tc.Expect
			if v.Admitted != e.Admitted || v.Code.String() != e.Code || v.Layer != e.Layer {
				t.Fatalf("verdict = admitted %v code %s layer %d (%s: %s); want admitted %v code %s layer %d",
					v.Admitted, v.Code, v.Layer, v.Cause, v.Reason, e.Admitted, e.Code, e.Layer)
			}
			if v.Identity.Cluster != e.Cluster || v.Identity.CIDR != e.CIDR {
				t.Errorf("identity = %+v; want cluster %q cidr %q", v.Identity, e.Cluster, e.CIDR)
			}
			if !e.Admitted && v.Cause != e.Cause {
				t.Errorf("cause = %q (%s); want %q", v.Cause, v.Reason, e.Cause)
			}
			if e.Admitted && v.Identity.Kind == "" {
				t.Errorf("admitted without an identity kind")
			}
			// Explain must reach the same verdict as Admit.
			if ev, steps := p.Explain(tc.Peer, h); ev != v || len(steps) == 0 {
				t.Errorf("Explain = %+v with %d steps; Admit = %+v", ev, len(steps), v)
			}
			// No verdict text may echo the credential.
			if tok := strings.TrimSpace(strings.TrimPrefix(h.Get("Authorization"), "Bearer")); len(tok) > 8 {
				if strings.Contains(v.Reason, tok) {
					t.Errorf("reason %q contains the token", v.Reason)
				}
			}
		})
	}
}
