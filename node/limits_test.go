package node_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ekisa-team/syn4pse/node"
	"github.com/ekisa-team/syn4pse/node/config"
	pb "github.com/ekisa-team/syn4pse/proto/syn4pse/v1"
)

// startLimitedNode runs an in-process node with the given limits and Ollama's API until the
// test ends.
func startLimitedNode(t *testing.T, limits config.Limits, decls ...config.Model) *node.Node {
	t.Helper()
	return startServerNode(t, config.Server{Limits: limits}, decls...)
}

// startServerNode runs an in-process node with the given [server] settings, on free loopback
// ports and with Ollama's API, until the test ends.
func startServerNode(t *testing.T, server config.Server, decls ...config.Model) *node.Node {
	t.Helper()
	server.Host, server.ShutdownTimeout, server.Ollama = "127.0.0.1", 10*time.Second, true
	n, err := node.Start(t.Context(), &config.Config{
		DataDir:   t.TempDir(),
		Server:    server,
		Log:       config.Log{Level: "info", Format: "text"},
		Models:    decls,
		Lifecycle: config.Lifecycle{KeepAlive: 5 * time.Minute},
	})
	if err != nil {
		t.Fatalf("start node: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := n.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return n
}

// openaiChatBody is an OpenAI chat request body with the given user messages.
func openaiChatBody(model string, extra string, contents ...string) string {
	msgs := make([]string, len(contents))
	for i, c := range contents {
		msgs[i] = fmt.Sprintf(`{"role":"user","content":%q}`, c)
	}
	return fmt.Sprintf(`{"model":%q,%s"messages":[%s]}`, model, extra, strings.Join(msgs, ","))
}

// postReply posts body and returns the status, the Retry-After header and the body.
func postReply(t *testing.T, url, body string) (int, string, string) {
	t.Helper()
	res, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res.StatusCode, res.Header.Get("Retry-After"), string(b)
}

func TestRequestLimits(t *testing.T) {
	limits := config.Limits{MaxRequestBody: 4 << 10, MaxMessages: 3, MaxPromptBytes: 1000, GRPCMaxMessage: 8 << 10}
	n := startLimitedNode(t, limits, tinyDecl("tiny"))
	openaiURL, ollamaURL := "http://"+n.HTTPAddr(), "http://"+n.OllamaAddr()
	big := strings.Repeat("a", 600)

	tests := []struct {
		name, url, body string
		code, key       string // the OpenAI error code ("" for Ollama's API) and the key the message names
	}{
		{"body", openaiURL + "/v1/chat/completions", openaiChatBody("tiny", "", strings.Repeat("b", 5000)), "body_too_large", "server.max_request_body"},
		{"messages", openaiURL + "/v1/chat/completions", openaiChatBody("tiny", "", "1", "2", "3", "4"), "request_too_large", "server.max_messages"},
		{"message bytes", openaiURL + "/v1/chat/completions", openaiChatBody("tiny", `"stream":true,`, big, big), "request_too_large", "server.max_prompt_bytes"},
		{"prompt bytes", openaiURL + "/v1/completions", `{"model":"tiny","prompt":"` + big + big + `"}`, "request_too_large", "server.max_prompt_bytes"},
		{"Ollama body", ollamaURL + "/api/chat", openaiChatBody("tiny", "", strings.Repeat("b", 5000)), "", "server.max_request_body"},
		{"Ollama messages", ollamaURL + "/api/chat", openaiChatBody("tiny", "", "1", "2", "3", "4"), "", "server.max_messages"},
		{"Ollama prompt bytes", ollamaURL + "/api/generate", `{"model":"tiny","prompt":"` + big + big + `"}`, "", "server.max_prompt_bytes"},
		{"embeddings input bytes", openaiURL + "/v1/embeddings", `{"model":"tiny","input":["` + big + `","` + big + `"]}`, "request_too_large", "server.max_prompt_bytes"},
		{"rerank bytes", openaiURL + "/v1/rerank", `{"model":"tiny","query":"q","documents":["` + big + `","` + big + `"]}`, "request_too_large", "server.max_prompt_bytes"},
		{"Ollama embed bytes", ollamaURL + "/api/embed", `{"model":"tiny","input":["` + big + `","` + big + `"]}`, "", "server.max_prompt_bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, retryAfter, body := postReply(t, tt.url, tt.body)
			if code != http.StatusRequestEntityTooLarge || retryAfter != "" || !strings.Contains(body, tt.key) || !strings.Contains(body, tt.code) {
				t.Fatalf("status %d, Retry-After %q, body %s; want 413 naming %s (%s), no Retry-After", code, retryAfter, body, tt.key, tt.code)
			}
		})
	}

	// Within every limit (3 messages, 4 KiB, 1000 bytes), the node serves.
	if code, _, body := postReply(t, openaiURL+"/v1/chat/completions", openaiChatBody("tiny", `"max_tokens":2,`, "1", "2", "3")); code != http.StatusOK {
		t.Fatalf("a request within the limits: %d %s", code, body)
	}

	client := pb.NewInferenceServiceClient(grpcConn(t, n))
	msgs := func(contents ...string) []*pb.Message {
		var out []*pb.Message
		for _, c := range contents {
			out = append(out, &pb.Message{Role: "user", Content: c})
		}
		return out
	}
	grpcTests := []struct {
		name string
		call func() error
		code codes.Code
		msg  string
	}{
		{"messages", func() error {
			return streamErr(client.Chat(t.Context(), &pb.ChatRequest{Model: "tiny", Messages: msgs("1", "2", "3", "4")}))
		},
			codes.OutOfRange, "server.max_messages"},
		{"message bytes", func() error {
			return streamErr(client.Chat(t.Context(), &pb.ChatRequest{Model: "tiny", Messages: msgs(big, big)}))
		},
			codes.OutOfRange, "server.max_prompt_bytes"},
		{"prompt bytes", func() error {
			return streamErr(client.Complete(t.Context(), &pb.CompleteRequest{Model: "tiny", Prompt: big + big}))
		}, codes.OutOfRange, "server.max_prompt_bytes"},
		{"embed input bytes", func() error {
			_, err := client.Embed(t.Context(), &pb.EmbedRequest{Model: "tiny", Inputs: []*pb.EmbedInput{
				{Input: &pb.EmbedInput_Text{Text: big}}, {Input: &pb.EmbedInput_Tokens{Tokens: &pb.TokenIDs{Ids: make([]int32, 150)}}}}})
			return err
		}, codes.OutOfRange, "server.max_prompt_bytes"},
		// gRPC's own check, before the request reaches the service.
		{"message size", func() error {
			return streamErr(client.Complete(t.Context(), &pb.CompleteRequest{Model: "tiny", Prompt: strings.Repeat("c", 9<<10)}))
		}, codes.ResourceExhausted, "larger than max"},
	}
	for _, tt := range grpcTests {
		t.Run("gRPC "+tt.name, func(t *testing.T) {
			err := tt.call()
			if status.Code(err) != tt.code || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("err = %v; want %v naming %q", err, tt.code, tt.msg)
			}
		})
	}
	if err := streamErr(client.Chat(t.Context(), &pb.ChatRequest{Model: "tiny", Messages: msgs("hi"),
		Sampling: &pb.SamplingParams{MaxTokens: ptr(int32(2))}})); err != nil {
		t.Fatalf("a gRPC request within the limits: %v", err)
	}
}

// An audio upload is bounded by server.max_audio: that long of 48 kHz 16-bit stereo WAV.
func TestAudioUploadBoundedByMaxAudio(t *testing.T) {
	n := startServerNode(t, config.Server{MaxAudio: time.Second})
	upload := func(size int) (int, string) {
		var body bytes.Buffer
		form := multipart.NewWriter(&body)
		form.WriteField("model", "stt")
		part, _ := form.CreateFormFile("file", "a.wav")
		part.Write(make([]byte, size))
		form.Close()
		res, err := http.Post("http://"+n.HTTPAddr()+"/v1/audio/transcriptions", form.FormDataContentType(), &body)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	// 1 s is 192,000 bytes, plus 1 MiB for the form.
	if code, body := upload(1<<20 + 200_000); code != http.StatusRequestEntityTooLarge || !strings.Contains(body, "server.max_audio") {
		t.Fatalf("an upload over the bound: %d %s; want 413 naming server.max_audio", code, body)
	}
	// Within the bound the upload is read, and refused for what it holds (no such model).
	if code, body := upload(1 << 20); code == http.StatusRequestEntityTooLarge {
		t.Fatalf("an upload within the bound: %d %s", code, body)
	}
}

// streamErr is the error a generation stream ends with.
func streamErr(stream interface {
	Recv() (*pb.GenerateResponse, error)
}, err error) error {
	if err != nil {
		return err
	}
	for {
		if _, err := stream.Recv(); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
}

func TestMaxTokensClamped(t *testing.T) {
	n := startLimitedNode(t, config.Limits{MaxTokens: 5}, tinyDecl("tiny"))
	usage := func(t *testing.T, url, body string) (tokens int, finish string) {
		t.Helper()
		code, _, b := postReply(t, url, body)
		var res struct {
			Choices []struct {
				FinishReason string `json:"finish_reason"`
			} `json:"choices"`
			Usage struct {
				CompletionTokens int `json:"completion_tokens"`
			} `json:"usage"`
		}
		if err := json.Unmarshal([]byte(b), &res); err != nil || code != http.StatusOK || len(res.Choices) != 1 {
			t.Fatalf("%d %s: %v", code, b, err)
		}
		return res.Usage.CompletionTokens, res.Choices[0].FinishReason
	}
	base := "http://" + n.HTTPAddr()
	for name, body := range map[string]string{
		"max_tokens":            openaiChatBody("tiny", `"max_tokens":1000000,"ignore_eos":true,`, "Hello"),
		"max_completion_tokens": openaiChatBody("tiny", `"max_completion_tokens":1000000,"ignore_eos":true,`, "Hello"),
		"no max_tokens":         openaiChatBody("tiny", `"ignore_eos":true,`, "Hello"),
	} {
		if tokens, finish := usage(t, base+"/v1/chat/completions", body); tokens != 5 || finish != "length" {
			t.Errorf("%s: %d tokens, finish %q; want 5 (server.max_tokens), length", name, tokens, finish)
		}
	}

	// Ollama's num_predict (Ollama has no ignore_eos: this seed runs past 5 tokens).
	code, _, b := postReply(t, "http://"+n.OllamaAddr()+"/api/generate",
		`{"model":"tiny","prompt":"Hello","stream":false,"options":{"num_predict":1000000,"temperature":0,"seed":1}}`)
	var ores struct {
		EvalCount  int    `json:"eval_count"`
		DoneReason string `json:"done_reason"`
	}
	if err := json.Unmarshal([]byte(b), &ores); err != nil || code != http.StatusOK || ores.EvalCount != 5 || ores.DoneReason != "length" {
		t.Errorf("Ollama num_predict 1e6: %d %s; want eval_count 5, done_reason length", code, b)
	}

	// gRPC.
	client := pb.NewInferenceServiceClient(grpcConn(t, n))
	stream, err := client.Complete(t.Context(), &pb.CompleteRequest{Model: "tiny", Prompt: "Hello",
		Sampling: &pb.SamplingParams{MaxTokens: ptr(int32(1000000)), IgnoreEos: true}})
	if err != nil {
		t.Fatal(err)
	}
	_, final, err := collect(stream)
	if err != nil || final.GetUsage().GetCompletionTokens() != 5 || final.GetFinishReason() != pb.FinishReason_FINISH_REASON_LENGTH {
		t.Errorf("gRPC max_tokens 1e6: %v, %v; want 5 tokens, LENGTH", final, err)
	}
}

// waitModelIdle polls until the node's only model runs no request, and returns its stats.
func waitModelIdle(t *testing.T, models pb.ModelServiceClient) *pb.ModelStats {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		list, err := models.ListModels(t.Context(), &pb.ListModelsRequest{})
		if err != nil {
			t.Fatal(err)
		}
		stats := list.GetModels()[0].GetStats()
		if stats.GetActiveRequests() == 0 {
			return stats
		}
		if time.Now().After(deadline) {
			t.Fatalf("the model still runs a request: %v", stats)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// readSSE reads an event stream to its end and says whether it ended with "data: [DONE]".
func readSSE(r io.Reader) (events int, done bool, err error) {
	scanner := bufio.NewScanner(r)
	scanner.Buffer(make([]byte, 1<<20), 1<<20)
	for scanner.Scan() {
		line := scanner.Text()
		if line == "data: [DONE]" {
			done = true
		} else if strings.HasPrefix(line, "data: ") {
			events++
		}
	}
	return events, done, scanner.Err()
}

// A client that stops reading a stream is cut after server.write_timeout and its slot freed;
// the generation does not run on to its end.
func TestStalledStreamIsCut(t *testing.T) {
	decl := tinyDecl("tiny")
	decl.ContextLength = 8192
	n := startLimitedNode(t, config.Limits{WriteTimeout: 200 * time.Millisecond}, decl)
	models := pb.NewModelServiceClient(grpcConn(t, n))

	// A receive buffer of a few KiB, so the server's writes block soon after the client stops
	// reading; 20 log-probabilities make each event a few KiB.
	dialer := &net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
		return errors.Join(err, serr)
	}}
	conn, err := dialer.DialContext(t.Context(), "tcp", n.HTTPAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	body := openaiChatBody("tiny", `"stream":true,"ignore_eos":true,"logprobs":true,"top_logprobs":20,`, "Once upon a time")
	fmt.Fprintf(conn, "POST /v1/chat/completions HTTP/1.1\r\nHost: node\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	head := make([]byte, 1024)
	if k, err := io.ReadAtLeast(conn, head, len("HTTP/1.1 200")); err != nil || !strings.HasPrefix(string(head), "HTTP/1.1 200") {
		t.Fatalf("response: %q, %v", head[:k], err)
	}

	// The client reads no more: the server's writes block, and after write_timeout the stream
	// is cut and the slot freed.
	stats := waitModelIdle(t, models)
	rest, _ := io.ReadAll(conn)
	if strings.Contains(string(rest), "data: [DONE]") {
		t.Fatalf("the stream ran to its end (%d tokens) although its client stopped reading", stats.GetGeneratedTokensTotal())
	}
	if stats.GetGeneratedTokensTotal() >= 8000 {
		t.Fatalf("generation ran on after the client stopped reading: %v", stats)
	}
	t.Logf("stalled stream cut after %d tokens, %d bytes received", stats.GetGeneratedTokensTotal(), len(rest))

	// The node serves the next request.
	if code, _, b := postReply(t, "http://"+n.HTTPAddr()+"/v1/completions", `{"model":"tiny","prompt":"Next","max_tokens":2}`); code != http.StatusOK {
		t.Fatalf("next request: %d %s", code, b)
	}
}

// A stream whose client keeps reading outlives server.write_timeout and server.read_timeout.
func TestLongStreamOutlivesTimeouts(t *testing.T) {
	decl := tinyDecl("tiny")
	decl.ContextLength = 4096 // some 4000 tokens, seconds of streaming
	// Long enough that a reading client on a busy machine is never cut.
	const timeout = time.Second
	n := startLimitedNode(t, config.Limits{WriteTimeout: timeout, ReadTimeout: timeout}, decl)
	start := time.Now()
	res, err := http.Post("http://"+n.HTTPAddr()+"/v1/completions", "application/json",
		strings.NewReader(`{"model":"tiny","stream":true,"ignore_eos":true,"prompt":"Once upon a time"}`))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	events, done, err := readSSE(res.Body)
	took := time.Since(start)
	if err != nil || !done || events < 2000 {
		t.Fatalf("stream: %d events, [DONE] %v, err %v; want it whole", events, done, err)
	}
	t.Logf("%d events in %v (timeouts %v)", events, took, timeout)
	if took < timeout {
		t.Fatalf("the stream took %v, too short to show that it outlives the %v timeouts: lengthen it", took, timeout)
	}
}

// The gRPC server announces server.grpc_max_streams and sends GOAWAY (ENHANCE_YOUR_CALM) to a
// client pinging more often than server.grpc_keepalive_min, and not to one that keeps to it.
func TestGRPCTransportLimits(t *testing.T) {
	tests := []struct {
		name       string
		minPing    time.Duration
		pause      time.Duration // between a ping's ack and the next ping
		wantGoAway bool
	}{
		{"pings too often", time.Hour, 0, true},
		{"pings within the policy", time.Millisecond, 5 * time.Millisecond, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := startLimitedNode(t, config.Limits{GRPCMaxStreams: 3, GRPCKeepaliveMin: tt.minPing})
			conn, err := net.Dial("tcp", n.GRPCAddr())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(time.Minute))
			if _, err := io.WriteString(conn, http2.ClientPreface); err != nil {
				t.Fatal(err)
			}
			fr := http2.NewFramer(conn, conn)
			if err := fr.WriteSettings(); err != nil {
				t.Fatal(err)
			}
			f, err := fr.ReadFrame()
			if err != nil {
				t.Fatal(err)
			}
			settings, ok := f.(*http2.SettingsFrame)
			if !ok {
				t.Fatalf("first frame %v, want SETTINGS", f)
			}
			if v, ok := settings.Value(http2.SettingMaxConcurrentStreams); !ok || v != 3 {
				t.Fatalf("SETTINGS_MAX_CONCURRENT_STREAMS = %d (%v), want 3", v, ok)
			}
			if err := fr.WriteSettingsAck(); err != nil {
				t.Fatal(err)
			}
			const pings = 5
			acks, goAway := 0, (*http2.GoAwayFrame)(nil)
			for i := range pings {
				if err := fr.WritePing(false, [8]byte{byte(i)}); err != nil {
					t.Fatal(err)
				}
				acked := false
				for !acked && goAway == nil {
					f, err := fr.ReadFrame()
					if err != nil {
						t.Fatalf("after %d acks: %v", acks, err)
					}
					switch f := f.(type) {
					case *http2.PingFrame:
						acked = f.IsAck()
					case *http2.GoAwayFrame:
						goAway = f
					}
				}
				if goAway != nil {
					break
				}
				acks++
				time.Sleep(tt.pause)
			}
			switch {
			case tt.wantGoAway && (goAway == nil || goAway.ErrCode != http2.ErrCodeEnhanceYourCalm):
				t.Fatalf("%d pings: %d acks, GOAWAY %v; want GOAWAY ENHANCE_YOUR_CALM", pings, acks, goAway)
			case !tt.wantGoAway && (goAway != nil || acks != pings):
				t.Fatalf("%d pings: %d acks, GOAWAY %v; want every ping acked", pings, acks, goAway)
			}
		})
	}
}
