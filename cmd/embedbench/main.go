// Command embedbench measures embeddings servers side by side: the same short inputs embedded in
// one request and in one request per input (sent one after another), timed at the client, each
// scenario run on every server in turn and repeated for several rounds, so that the servers share
// the machine's noise. It prints embeddings per second (medians), the first server's ratios
// against the others, the vectors' dimension and the cosine similarity of the first server's
// vectors to each other server's for the same input.
//
//	embedbench -model bench -target syn4pse=http://127.0.0.1:8080/v1/embeddings \
//	    -target ollama=http://127.0.0.1:11434/api/embed [-inputs 256] [-rounds 3]
//
// A target's URL is the endpoint itself: OpenAI's /v1/embeddings and Ollama's /api/embed take the
// same body ({"model", "input": [...]}) and answer in two shapes, both read here.
// scripts/bench-ollama.sh starts the servers and runs it (task bench-ollama-embed).
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
)

// target is one server under test and its rates per round.
type target struct {
	name, url     string
	packed, apart []float64
	// vectors are the first round's, from the request of all inputs; apartVectors from the
	// requests of one input, to check that packing changes nothing.
	vectors, apartVectors [][]float64
	tokens                int
}

// targetFlag is the repeatable -target name=url flag.
type targetFlag []*target

func (t *targetFlag) String() string { return fmt.Sprint(len(*t), " targets") }

func (t *targetFlag) Set(s string) error {
	name, url, ok := strings.Cut(s, "=")
	if !ok || name == "" || url == "" {
		return fmt.Errorf("%q: want name=url", s)
	}
	*t = append(*t, &target{name: name, url: url})
	return nil
}

func main() {
	var ts targetFlag
	var model string
	var inputs, rounds int
	var timeout time.Duration
	flags := flag.NewFlagSet("embedbench", flag.ContinueOnError)
	flags.Usage = func() {
		fmt.Fprint(flags.Output(), "Usage: embedbench -target NAME=URL [-target NAME=URL...] [flags]\n\n"+
			"Embeds the same inputs on each server in turn, in one request and one request per input,\n"+
			"and prints embeddings per second. URL is the endpoint: .../v1/embeddings or .../api/embed.\n\n")
		flags.PrintDefaults()
	}
	flags.Var(&ts, "target", "`name=url` of an embeddings endpoint (repeat; the first is the one compared against the others)")
	flags.StringVar(&model, "model", "bench", "model name sent in every request")
	flags.IntVar(&inputs, "inputs", 256, "short inputs (~10 tokens each) embedded per scenario")
	flags.IntVar(&rounds, "rounds", 3, "rounds of every scenario on every server; the table shows medians")
	flags.DurationVar(&timeout, "timeout", 30*time.Minute, "the whole run's limit")
	if err := flags.Parse(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		os.Exit(2)
	}
	if len(ts) == 0 || inputs < 1 || rounds < 1 {
		fmt.Fprintln(os.Stderr, "embedbench: want at least one -target, and -inputs and -rounds of at least 1")
		os.Exit(2)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c := &client{http: &http.Client{}, model: model}
	if err := run(ctx, c, ts, texts(inputs), rounds); err != nil {
		slog.Error("embedbench failed", "err", err)
		os.Exit(1)
	}
	printReport(os.Stdout, ts, inputs, rounds)
}

// texts are n short inputs, distinct so that no server can answer one from another's cache; the
// same as engine/llamacpp's BenchmarkEmbed.
func texts(n int) []string {
	s := make([]string, n)
	for i := range s {
		s[i] = fmt.Sprintf("sentence %d about the cat on the mat", i)
	}
	return s
}

// run warms every server, then runs the rounds: each scenario on each server in turn.
func run(ctx context.Context, c *client, ts []*target, inputs []string, rounds int) error {
	for _, t := range ts {
		if _, _, err := c.embed(ctx, t.url, inputs[:1]); err != nil {
			return fmt.Errorf("warm up %s: %w", t.name, err)
		}
	}
	for n := 1; n <= rounds; n++ {
		for _, t := range ts {
			start := time.Now()
			vecs, tokens, err := c.embed(ctx, t.url, inputs)
			if err != nil {
				return fmt.Errorf("round %d, one request on %s: %w", n, t.name, err)
			}
			if len(vecs) != len(inputs) {
				return fmt.Errorf("round %d, one request on %s: %d vectors for %d inputs", n, t.name, len(vecs), len(inputs))
			}
			t.packed = append(t.packed, rate(len(inputs), time.Since(start)))
			if n == 1 {
				t.vectors, t.tokens = vecs, tokens
			}
			slog.Info("scenario done", "round", n, "scenario", "one request", "target", t.name, "embeddings_s", num(t.packed[n-1], 1))
		}
		for _, t := range ts {
			start := time.Now()
			var vecs [][]float64
			for _, in := range inputs {
				v, _, err := c.embed(ctx, t.url, []string{in})
				if err != nil {
					return fmt.Errorf("round %d, one input per request on %s: %w", n, t.name, err)
				}
				vecs = append(vecs, v...)
			}
			t.apart = append(t.apart, rate(len(inputs), time.Since(start)))
			if n == 1 {
				t.apartVectors = vecs
			}
			slog.Info("scenario done", "round", n, "scenario", "one input per request", "target", t.name, "embeddings_s", num(t.apart[n-1], 1))
		}
	}
	return nil
}

func rate(n int, d time.Duration) float64 { return float64(n) / d.Seconds() }

// client sends embeddings requests.
type client struct {
	http  *http.Client
	model string
}

// embedResponse holds both answers: OpenAI's data[].embedding with usage, Ollama's embeddings
// with prompt_eval_count.
type embedResponse struct {
	Data []struct {
		Embedding []float64 `json:"embedding"`
	} `json:"data"`
	Usage struct {
		PromptTokens int `json:"prompt_tokens"`
	} `json:"usage"`
	Embeddings      [][]float64 `json:"embeddings"`
	PromptEvalCount int         `json:"prompt_eval_count"`
}

// embed posts inputs to url and returns one vector per input and the tokens the server counted.
func (c *client) embed(ctx context.Context, url string, inputs []string) ([][]float64, int, error) {
	body, err := json.Marshal(map[string]any{"model": c.model, "input": inputs})
	if err != nil {
		return nil, 0, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, 0, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, 0, fmt.Errorf("%s: %s", resp.Status, bytes.TrimSpace(raw))
	}
	var r embedResponse
	if err := json.Unmarshal(raw, &r); err != nil {
		return nil, 0, fmt.Errorf("read the answer: %w", err)
	}
	if r.Embeddings != nil {
		return r.Embeddings, r.PromptEvalCount, nil
	}
	vecs := make([][]float64, len(r.Data))
	for i, d := range r.Data {
		vecs[i] = d.Embedding
	}
	return vecs, r.Usage.PromptTokens, nil
}

// cosines are the cosine similarities of a[i] and b[i]; NaN where the lengths differ.
func cosines(a, b [][]float64) []float64 {
	out := make([]float64, min(len(a), len(b)))
	for i := range out {
		out[i] = cosine(a[i], b[i])
	}
	return out
}

func cosine(a, b []float64) float64 {
	if len(a) != len(b) || len(a) == 0 {
		return math.NaN()
	}
	var dot, na, nb float64
	for i := range a {
		dot, na, nb = dot+a[i]*b[i], na+a[i]*a[i], nb+b[i]*b[i]
	}
	return dot / math.Sqrt(na*nb)
}

// median is the middle value of xs, the mean of the two middle ones for an even count.
func median(xs []float64) float64 {
	s := slices.Sorted(slices.Values(xs))
	n := len(s)
	switch {
	case n == 0:
		return math.NaN()
	case n%2 == 1:
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

func num(x float64, decimals int) string { return fmt.Sprintf("%.*f", decimals, x) }

// printReport writes every server's figures, then the first server's ratios and the cosine
// similarity of its vectors to the others'.
func printReport(w io.Writer, ts []*target, inputs, rounds int) {
	fmt.Fprintf(w, "\nmedians of %d rounds; %d short inputs, embeddings per second seen by the client\n", rounds, inputs)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(label string, f func(t *target) string) {
		line := label + "\t"
		for _, t := range ts {
			line += f(t) + "\t"
		}
		fmt.Fprintln(tw, line)
	}
	row("", func(t *target) string { return t.name })
	row(fmt.Sprintf("one request of %d inputs: embeddings/s", inputs), func(t *target) string { return num(median(t.packed), 1) })
	row(fmt.Sprintf("%d requests of one input: embeddings/s", inputs), func(t *target) string { return num(median(t.apart), 1) })
	row("dimension", func(t *target) string { return fmt.Sprint(len(t.vectors[0])) })
	row("tokens counted (one request)", func(t *target) string { return fmt.Sprint(t.tokens) })
	row("cosine, one request vs one input per request: min", func(t *target) string {
		return num(slices.Min(cosines(t.vectors, t.apartVectors)), 6)
	})
	tw.Flush()
	first := ts[0]
	for _, t := range ts[1:] {
		cos := cosines(first.vectors, t.vectors)
		fmt.Fprintf(w, "%s / %s: one request %.2f×, one input per request %.2f×; cosine of the same input's vectors: min %.6f, median %.6f\n",
			first.name, t.name, median(first.packed)/median(t.packed), median(first.apart)/median(t.apart),
			slices.Min(cos), median(cos))
	}
}
