package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	pb "github.com/ekisa-team/syn4pse/proto/syn4pse/v1"
)

// TestMeshStreamSurvivesItsNode: alpha, without the model, forwards a streamed chat to beta or
// gamma, which serve the same model file. Once the client has some tokens, the serving node is
// killed with SIGKILL; alpha continues the reply on the other node from the text so far, and
// the client's stream completes as one: one id, every token once, both nodes named, the usage
// counting both parts.
func TestMeshStreamSurvivesItsNode(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three node processes")
	}
	model := writeModel(t, "tiny")
	a := newMeshNode(t, "alpha", nil)
	b := newMeshNode(t, "beta", map[string]string{"x": model})
	c := newMeshNode(t, "gamma", map[string]string{"x": model})
	formMesh(t, a, b, c)
	a.waitFor("both servers of x", func() bool { return len(a.peers("x")) == 2 })
	servers := map[string]*meshNode{b.peerID(): b, c.peerID(): c}

	// A long greedy generation that ignores end-of-generation tokens, so the kill lands
	// mid-stream: the moment is picked by counting tokens received, not by sleeping.
	const maxTokens, killAfter = 3000, 40
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	stream, err := pb.NewInferenceServiceClient(a.conn).Chat(ctx, &pb.ChatRequest{Model: "x",
		Messages: []*pb.Message{{Role: "user", Content: "Tell me a long story."}},
		Sampling: &pb.SamplingParams{MaxTokens: ptrTo(int32(maxTokens)), IgnoreEos: true, Temperature: ptrTo(float32(0))}})
	if err != nil {
		t.Fatal(err)
	}
	var (
		text              strings.Builder
		ids               = map[string]bool{}
		order             []string // the serving nodes, in the order their events came
		final             *pb.Final
		tokens, lastCount int32
		killed            *meshNode
		lastFromFirst     time.Time
		gap               time.Duration
		tokensBefore      int32
		bytesBefore, seam int // bytes received at the kill and before the first event of the second node
	)
	for {
		ev, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("the stream failed after %d tokens (killed %v): %v", tokens, killed != nil, err)
		}
		now := time.Now()
		ids[ev.GetId()] = true
		if by := ev.GetServedBy(); len(order) == 0 || order[len(order)-1] != by {
			if len(order) == 1 {
				gap, seam = now.Sub(lastFromFirst), text.Len()
			}
			order = append(order, by)
		}
		if d := ev.GetDelta(); d != nil {
			text.WriteString(d.GetText())
			if n := d.GetCompletionTokens(); n <= lastCount {
				t.Fatalf("delta token count went from %d to %d", lastCount, n)
			} else {
				tokens += n - lastCount
				lastCount = n
			}
			if len(order) == 1 {
				lastFromFirst = now
			}
		}
		if f := ev.GetFinal(); f != nil {
			final = f
		}
		if killed == nil && tokens >= killAfter {
			killed = servers[order[0]]
			if killed == nil {
				t.Fatalf("first part served by %q, neither beta nor gamma", order[0])
			}
			tokensBefore, bytesBefore = tokens, text.Len()
			killed.kill()
		}
	}
	if killed == nil || final == nil {
		t.Fatalf("stream ended before the kill (%d tokens) or without a final event", tokens)
	}
	if len(order) != 2 || servers[order[1]] == nil || servers[order[1]] == killed {
		t.Fatalf("events came from %v; want the killed node, then the other", order)
	}
	want := order[0] + "," + order[1]
	if final.GetServedBy() != want || len(ids) != 1 {
		t.Fatalf("final served by %q, want %q; ids %v", final.GetServedBy(), want, ids)
	}
	// Every token once: the counts the deltas carry rise through the seam to max_tokens, which
	// the final's usage counts, across both parts.
	u := final.GetUsage()
	if tokens != maxTokens || u.GetCompletionTokens() != maxTokens || u.GetTotalTokens() != u.GetPromptTokens()+maxTokens ||
		final.GetFinishReason() != pb.FinishReason_FINISH_REASON_LENGTH {
		t.Fatalf("tokens received %d, usage %v, finish %v; want %d completion tokens, finish length", tokens, u, final.GetFinishReason(), maxTokens)
	}
	// The second part's prompt holds the first part's reply: more prompt tokens than the
	// question alone (a handful), at least one per token of the first part less merges.
	if u.GetPromptTokens() <= 10 {
		t.Fatalf("usage %v: the continuation's prompt did not hold the reply so far", u)
	}
	t.Logf("killed %s after %d tokens received (%d bytes); %s continued: gap between the last token of the first node and the first of the second %v; %d completion tokens, %d prompt tokens in the second part",
		killed.name, tokensBefore, bytesBefore, servers[order[1]].name, gap, u.GetCompletionTokens(), u.GetPromptTokens())

	// The same greedy generation uninterrupted on the survivor: the spliced text follows it
	// through the seam, with no byte lost or repeated there. (Past the seam the two can part
	// where a prompt read in a batch and the same tokens generated one by one round a near-tie
	// differently; on this model they have not.)
	ref, err := pb.NewInferenceServiceClient(a.conn).Chat(ctx, &pb.ChatRequest{Model: "x",
		Messages: []*pb.Message{{Role: "user", Content: "Tell me a long story."}}, Routing: &pb.Routing{Node: order[1]},
		Sampling: &pb.SamplingParams{MaxTokens: ptrTo(int32(maxTokens)), IgnoreEos: true, Temperature: ptrTo(float32(0))}})
	if err != nil {
		t.Fatal(err)
	}
	refText, _, err := drain(ref)
	if err != nil {
		t.Fatal(err)
	}
	common := 0
	for common < min(len(refText), text.Len()) && refText[common] == text.String()[common] {
		common++
	}
	if through := min(seam+64, text.Len()); common < through {
		t.Fatalf("the spliced text leaves the uninterrupted one at byte %d, the seam at %d:\nspliced %q\nwhole   %q",
			common, seam, text.String()[max(seam-32, 0):through], refText[max(seam-32, 0):min(through, len(refText))])
	}
	t.Logf("seam at byte %d; the spliced text equals the uninterrupted one for %d of %d bytes", seam, common, text.Len())

	// Alpha's metrics tell the story: one forward broke mid-stream and the stream was resumed.
	if got := a.forwardOutcomes(); got["broken"] != 1 || got["resumed"] != 1 {
		t.Fatalf("alpha's forward outcomes %v: want one broken and one resumed", got)
	}

	// The killed node comes back; the same through alpha's OpenAI API, streamed.
	killed.start()
	a.waitFor("both servers of x again", func() bool { return len(a.peers("x")) == 2 })
	streamOverHTTP(t, a, servers)
}

// streamOverHTTP streams a chat through n's OpenAI API with the OpenAI SDK, kills the node
// serving it once some chunks came, and checks that the SDK sees one sane completion: no error,
// one id, the whole usage, finish reason length.
func streamOverHTTP(t *testing.T, n *meshNode, servers map[string]*meshNode) {
	t.Helper()
	const maxTokens, killAfter = 2000, 40
	client := openai.NewClient(option.WithBaseURL(fmt.Sprintf("http://127.0.0.1:%d/v1/", n.httpPort)), option.WithAPIKey("x"),
		option.WithMaxRetries(0), option.WithJSONSet("ignore_eos", true))
	params := openai.ChatCompletionNewParams{Model: "x", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Go on.")},
		MaxTokens: openai.Int(maxTokens), Temperature: openai.Float(0),
		StreamOptions: openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}}
	var httpRes *http.Response
	stream := client.Chat.Completions.NewStreaming(t.Context(), params, option.WithResponseInto(&httpRes))
	acc := openai.ChatCompletionAccumulator{}
	ids := map[string]bool{}
	var content strings.Builder
	chunks := 0
	var killed *meshNode
	for stream.Next() {
		chunk := stream.Current()
		acc.AddChunk(chunk)
		ids[chunk.ID] = true
		if len(chunk.Choices) > 0 && chunk.Choices[0].Delta.Content != "" {
			content.WriteString(chunk.Choices[0].Delta.Content)
			chunks++
		}
		if killed == nil && chunks >= killAfter {
			if killed = servers[httpRes.Header.Get("Syn4pse-Served-By")]; killed == nil {
				t.Fatalf("served by %q", httpRes.Header.Get("Syn4pse-Served-By"))
			}
			killed.kill()
		}
	}
	if err := stream.Err(); err != nil || killed == nil {
		t.Fatalf("OpenAI stream: killed %v, err %v", killed != nil, err)
	}
	if len(ids) != 1 || len(acc.Choices) != 1 || acc.Choices[0].Message.Content != content.String() ||
		acc.Usage.CompletionTokens != maxTokens || acc.Choices[0].FinishReason != "length" {
		t.Fatalf("OpenAI stream: ids %v, usage %+v, finish %q", ids, acc.Usage, acc.Choices[0].FinishReason)
	}
	t.Logf("OpenAI stream: killed %s after %d chunks; %d chunks, %d bytes, usage %d+%d", killed.name, killAfter, chunks,
		content.Len(), acc.Usage.PromptTokens, acc.Usage.CompletionTokens)
}
