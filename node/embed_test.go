package node_test

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"math"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"

	"github.com/ekisa-team/syn4pse/internal/tinygguf"
	"github.com/ekisa-team/syn4pse/node"
	"github.com/ekisa-team/syn4pse/node/config"
	pb "github.com/ekisa-team/syn4pse/proto/syn4pse/v1"
)

// embedDecl declares a generated BERT embeddings model (mean pooling, n_embd 64) under name.
func embedDecl(t *testing.T, name string) config.Model {
	t.Helper()
	path := filepath.Join(t.TempDir(), name+".gguf")
	if err := tinygguf.Write(path, tinygguf.Options{Arch: "bert", Seed: 5}); err != nil {
		t.Fatal(err)
	}
	return config.Model{Name: name, Modality: "embeddings", Engine: "llama_cpp", Path: path, Enabled: true,
		Threads: 1, BatchSize: 512, Parallel: 1, FlashAttention: "auto", ContextLength: 64,
		Declared: "test [models." + name + "]"}
}

// decodeBase64Floats reads OpenAI's base64 embedding: little-endian float32s.
func decodeBase64Floats(t *testing.T, s string) []float64 {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil || len(b)%4 != 0 {
		t.Fatalf("base64 embedding %q: %v", s, err)
	}
	out := make([]float64, len(b)/4)
	for i := range out {
		out[i] = float64(math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:])))
	}
	return out
}

func TestEmbeddingsWithOpenAIClient(t *testing.T) {
	n := startNode(t, embedDecl(t, "vec"), tinyDecl("tiny"))
	client := openaiClient("http://" + n.HTTPAddr())
	texts := []string{"the cat sat on the mat", "hello there", "cat"}
	floats, err := client.Embeddings.New(t.Context(), openai.EmbeddingNewParams{Model: "vec",
		Input: openai.EmbeddingNewParamsInputUnion{OfArrayOfStrings: texts}})
	if err != nil {
		t.Fatal(err)
	}
	if len(floats.Data) != 3 || floats.Usage.PromptTokens == 0 || floats.Model != "vec" || floats.Object != "list" {
		t.Fatalf("response: %+v", floats)
	}
	for i, d := range floats.Data {
		var sum float64
		for _, x := range d.Embedding {
			sum += x * x
		}
		if d.Index != int64(i) || len(d.Embedding) != 64 || math.Abs(math.Sqrt(sum)-1) > 1e-5 {
			t.Errorf("data %d: index %d, %d floats, norm %g", i, d.Index, len(d.Embedding), math.Sqrt(sum))
		}
	}

	// base64: the SDK leaves the string in the raw JSON; it decodes to the same floats.
	b64, err := client.Embeddings.New(t.Context(), openai.EmbeddingNewParams{Model: "vec",
		Input: openai.EmbeddingNewParamsInputUnion{OfArrayOfStrings: texts}, EncodingFormat: openai.EmbeddingNewParamsEncodingFormatBase64})
	if err != nil {
		t.Fatal(err)
	}
	for i, d := range b64.Data {
		s, err := strconv.Unquote(d.JSON.Embedding.Raw())
		if err != nil {
			t.Fatalf("data %d: %q is not a string", i, d.JSON.Embedding.Raw())
		}
		got := decodeBase64Floats(t, s)
		for j := range got {
			if math.Abs(got[j]-floats.Data[i].Embedding[j]) > 1e-6 {
				t.Fatalf("data %d: base64 float %d is %g, float gives %g", i, j, got[j], floats.Data[i].Embedding[j])
			}
		}
	}

	// One string, token ids, arrays of token ids: each form embeds.
	toks := []int64{tinygguf.BertCLSToken, 10, 11, tinygguf.BertSEPToken}
	for name, in := range map[string]openai.EmbeddingNewParamsInputUnion{
		"string": {OfString: openai.String("the cat")},
		"tokens": {OfArrayOfTokens: toks},
		"arrays": {OfArrayOfTokenArrays: [][]int64{toks, toks[:3]}},
	} {
		res, err := client.Embeddings.New(t.Context(), openai.EmbeddingNewParams{Model: "vec", Input: in})
		if err != nil || len(res.Data) == 0 || len(res.Data[0].Embedding) != 64 {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestEmbeddingsBadRequests(t *testing.T) {
	n := startNode(t, embedDecl(t, "vec"), tinyDecl("tiny"))
	url := "http://" + n.HTTPAddr() + "/v1/embeddings"
	long := strings.Repeat("cat ", 100)
	for _, tc := range []struct{ body, want string }{
		{`{"model":"vec","input":["short",` + strconv.Quote(long) + `]}`, "input 1 is"},
		{`{"model":"vec","input":[]}`, "empty"},
		{`{"model":"vec","input":{"a":1}}`, "input:"},
		{`{"model":"vec","input":[[1,2],[3,99999]]}`, "vocabulary"},
		{`{"model":"vec","input":"x","dimensions":32}`, "dimensions"},
		{`{"model":"vec","input":"x","encoding_format":"hex"}`, "encoding_format"},
		{`{"model":"tiny","input":"x"}`, "is a llm model"},
	} {
		res, err := http.Post(url, "application/json", strings.NewReader(tc.body))
		if err != nil {
			t.Fatal(err)
		}
		var body struct {
			Error struct{ Message string } `json:"error"`
		}
		json.NewDecoder(res.Body).Decode(&body)
		res.Body.Close()
		if res.StatusCode != http.StatusBadRequest || !strings.Contains(body.Error.Message, tc.want) {
			t.Errorf("%s: %d %q, want 400 with %q", tc.body, res.StatusCode, body.Error.Message, tc.want)
		}
	}
	// The node keeps serving; truncation takes the long input.
	res, err := http.Post(url, "application/json", bytes.NewReader([]byte(`{"model":"vec","truncate":true,"input":["short",`+strconv.Quote(long)+`]}`)))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("after bad requests: %d", res.StatusCode)
	}
}

// TestEmbedRoutedToPeer: in a mesh of three, an Embed call to a node without the model is
// served by the peer that has it.
func TestEmbedRoutedToPeer(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a mesh")
	}
	a, _, key, aAddrs := startMeshPair(t, []config.Model{embedDecl(t, "vec")}, tinyDecl("tiny"))
	c, err := node.Start(t.Context(), meshConfig(t, key, "c", aAddrs, tinyDecl("tiny")))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Shutdown(t.Context()) })
	client := pb.NewInferenceServiceClient(grpcConn(t, c))
	req := &pb.EmbedRequest{Model: "vec", Normalize: true, Inputs: []*pb.EmbedInput{
		{Input: &pb.EmbedInput_Text{Text: "the cat"}}, {Input: &pb.EmbedInput_Tokens{Tokens: &pb.TokenIDs{Ids: []int32{2, 10, 3}}}}}}
	deadline := time.Now().Add(30 * time.Second)
	for {
		res, err := client.Embed(t.Context(), req)
		if err == nil {
			if res.GetServedBy() != a.PeerID() || len(res.GetEmbeddings()) != 2 || len(res.GetEmbeddings()[1].GetValues()) != 64 {
				t.Fatalf("served by %s (a is %s), %d vectors", res.GetServedBy(), a.PeerID(), len(res.GetEmbeddings()))
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("embed through c: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestRerankOverHTTP(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rank.gguf")
	if err := tinygguf.Write(path, tinygguf.Options{Arch: "bert", Seed: 5, Pooling: "rank"}); err != nil {
		t.Fatal(err)
	}
	n := startNode(t, config.Model{Name: "ranker", Modality: "rerank", Engine: "llama_cpp", Path: path, Enabled: true,
		Threads: 1, BatchSize: 512, Parallel: 1, FlashAttention: "auto", ContextLength: 64, Declared: "test [models.ranker]"},
		embedDecl(t, "vec"))
	url := "http://" + n.HTTPAddr() + "/v1/rerank"
	docs := `["the cat sat on the mat", {"text": "stock markets fell"}, "a cat", "rain in the hills"]`
	res, err := http.Post(url, "application/json", strings.NewReader(`{"model":"ranker","query":"where is the cat","top_n":3,"return_documents":true,"documents":`+docs+`}`))
	if err != nil {
		t.Fatal(err)
	}
	var body struct {
		Results []struct {
			Index          int
			RelevanceScore float64 `json:"relevance_score"`
			Document       struct{ Text string }
		}
		Usage struct {
			PromptTokens int `json:"prompt_tokens"`
		}
	}
	json.NewDecoder(res.Body).Decode(&body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK || len(body.Results) != 3 || body.Usage.PromptTokens == 0 {
		t.Fatalf("%d: %+v", res.StatusCode, body)
	}
	seen := map[int]bool{}
	for i, r := range body.Results {
		if i > 0 && r.RelevanceScore > body.Results[i-1].RelevanceScore {
			t.Errorf("results not sorted: %+v", body.Results)
		}
		if seen[r.Index] || r.Document.Text == "" {
			t.Errorf("result %d: %+v", i, r)
		}
		seen[r.Index] = true
	}
	for _, bad := range []string{
		`{"model":"ranker","query":"q","documents":[]}`,
		`{"model":"ranker","query":"q","documents":[1]}`,
		`{"model":"vec","query":"q","documents":["a"]}`,
	} {
		res, err := http.Post(url, "application/json", strings.NewReader(bad))
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusBadRequest {
			t.Errorf("%s: %d, want 400", bad, res.StatusCode)
		}
	}
}
