package ingest

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// checkLokiJSON: the scanner-based decoder and the encoding/json one
// accept the same bodies and decode them to the same batch.
func checkLokiJSON(t *testing.T, body []byte) {
	t.Helper()
	want, werr := decodeLokiJSONStd(body, now)
	got, gerr := DecodeLokiJSON(body, now)
	if (werr == nil) != (gerr == nil) {
		t.Fatalf("encoding/json: %v; scanner: %v", werr, gerr)
	}
	if werr != nil {
		return
	}
	// Metadata comes from a map: its order is not part of the result.
	opts := cmp.Options{batchCmp, cmpopts.EquateEmpty()}
	if diff := cmp.Diff(want, got, opts); diff != "" {
		t.Fatalf("(-encoding/json +scanner):\n%s", diff)
	}
}

var lokiJSONCases = []string{
	`{"streams":[{"stream":{"app":"api","env":"prod"},"values":[["1700000000000000000","GET /"],["1700000000000000001","x",{"trace_id":"abc"}]]}]}`,
	`{"Streams":[{"STREAM":{"a":"1"},"Values":[["5","x"]]}]}`,
	`{"streams":[{"stream":{"a":"1"},"stream":{"b":"2"},"values":[["bad","x"]],"values":[["7","kept"]]}]}`,
	`{"streams":[{"stream":{"a":"1"},"values":[["7","x"]]}],"streams":[{"stream":{"b":"2"},"values":[["8","y"]]}]}`,
	`{"streams":[{"stream":{"a":null},"values":[["7",null,null]]}]}`,
	`{"streams":[{"stream":null,"values":[["7","x"]]},null,{"values":null}]}`,
	`{"streams":[{"stream":{"9bad":"x"},"values":[["1","x"]]}]}`,
	`{"streams":[{"stream":{"a":"\u00e9\ud83d\ude00\ud800x\n\"\\\/"},"values":[["1","\ud83d"]]}]}`,
	"{\"streams\":[{\"stream\":{\"a\":\"\xff\xfe\"},\"values\":[[\"1\",\"\xc3\"]]}]}",
	`{"other":{"deep":[1,2.5e-3,-0,true,false,null,{"x":[]}]},"streams":[]}`,
	`null`, ` {} `, `[]`, `{"streams":5}`, `{"streams":[5]}`, `{"streams":[{"stream":{"a":1}}]}`,
	`{"streams":[{"values":[["1","x","y"]]}]}`, `{"streams":[{"values":[["1","x",{},4]]}]}`, `{"streams":[{"values":[["1"]]}]}`,
	`{"streams":[{"values":[[1,"x"]]}]}`, `{"streams":[{"values":[["+1","x"]]}]}`, `{"streams":[{"values":[5]}]}`,
	`{"streams":[{"values":[["1","x",{"k":5}]]}]}`, `{"streams":[]} x`, `{"streams":[],}`, `{"a":01}`, `{"a":1.}`,
	`{"a":"\x"}`, `{"a":"\u12"}`, "{\"a\":\"\t\"}", `{"a" 1}`, `{"a":tru}`, `{"streams":[{"values":[["1","x"]` + strings.Repeat(" ", 3),
}

func TestLokiJSONMatchesStd(t *testing.T) {
	for _, c := range lokiJSONCases {
		t.Run(c, func(t *testing.T) { checkLokiJSON(t, []byte(c)) })
	}
	deep := `{"x":` + strings.Repeat("[", 9999) + strings.Repeat("]", 9999) + `,"streams":[]}`
	checkLokiJSON(t, []byte(deep))
	tooDeep := `{"x":` + strings.Repeat("[", 10000) + strings.Repeat("]", 10000) + `}`
	checkLokiJSON(t, []byte(tooDeep))
}

// FuzzLokiJSON checks the scanner-based decoder against encoding/json.
func FuzzLokiJSON(f *testing.F) {
	for _, c := range lokiJSONCases {
		f.Add([]byte(c))
	}
	f.Fuzz(checkLokiJSON)
}
