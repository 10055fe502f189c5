// Command loadbench measures OpenAI-compatible chat servers side by side: streaming
// /v1/chat/completions requests, timed at the client, each scenario run on every server in turn
// and repeated for several rounds, so that the servers share the machine's noise. It prints one
// table with each server's figures and the first server's ratios against the others.
//
//	loadbench -model bench -target syn4pse=http://127.0.0.1:8080 -target ollama=http://127.0.0.1:11434 \
//	    [-agg-goal ollama=2] [-rounds 3] [-streams 8] ...
//
// Scenarios: (a) one stream: prompt and generated tokens/s; (b) concurrent streams: aggregate
// generated tokens/s and time to first token; (c) a long prompt arriving while streams generate:
// its effect on their inter-token time and on the time to first token of streams arriving just
// after it. scripts/bench-ollama.sh starts the servers and runs it (task bench-ollama).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// target is one server under test.
type target struct {
	name string
	c    *client
	// results per round
	single     []single
	concurrent []concurrent
	long       []longPrompt
}

// namedValues is a repeatable name=value flag.
type namedValues struct {
	names, values []string
}

func (n *namedValues) String() string { return strings.Join(n.names, ",") }

func (n *namedValues) Set(s string) error {
	name, value, ok := strings.Cut(s, "=")
	if !ok || name == "" || value == "" {
		return fmt.Errorf("%q: want name=value", s)
	}
	n.names, n.values = append(n.names, name), append(n.values, value)
	return nil
}

func main() {
	var targets, aggGoals namedValues
	var sz sizes
	var model string
	var rounds int
	var timeout time.Duration
	flags := flag.NewFlagSet("loadbench", flag.ContinueOnError)
	flags.Usage = func() {
		fmt.Fprint(flags.Output(), "Usage: loadbench -target NAME=URL [-target NAME=URL...] [flags]\n\n"+
			"Runs streaming /v1/chat/completions scenarios on each server in turn and prints a table.\n\n")
		flags.PrintDefaults()
	}
	flags.Var(&targets, "target", "`name=url` of a server (repeat; the first is the one compared against the others)")
	flags.Var(&aggGoals, "agg-goal", "goal for the first server's concurrent aggregate over another's, as `name=ratio` (repeat)")
	flags.StringVar(&model, "model", "bench", "model name sent in every request")
	flags.IntVar(&rounds, "rounds", 3, "rounds of every scenario on every server; the table shows medians")
	flags.IntVar(&sz.promptTokens, "prompt-tokens", 256, "(a) prompt tokens of the single stream")
	flags.IntVar(&sz.genTokens, "gen-tokens", 128, "(a, b) tokens generated per stream")
	flags.IntVar(&sz.streams, "streams", 8, "(b) concurrent streams; (c) requests in flight, the long one included")
	flags.IntVar(&sz.streamPromptTokens, "stream-prompt-tokens", 64, "(b, c) prompt tokens of each short stream")
	flags.IntVar(&sz.longPromptTokens, "long-prompt-tokens", 2000, "(c) prompt tokens of the long request")
	flags.IntVar(&sz.running, "running", 4, "(c) streams generating before the long prompt; the others arrive after it")
	flags.IntVar(&sz.runningTokens, "running-tokens", 1024, "(c) most tokens a running stream generates")
	flags.DurationVar(&sz.arrivalDelay, "arrival-delay", 250*time.Millisecond, "(c) how long after the long prompt the other streams are sent")
	flags.DurationVar(&timeout, "timeout", 30*time.Minute, "the whole run's limit")
	if err := flags.Parse(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		os.Exit(2)
	}
	goals, err := parseGoals(aggGoals, targets)
	if err == nil {
		err = validate(len(targets.names), rounds, sz)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadbench:", err)
		os.Exit(2)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	httpClient := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64, DisableCompression: true}}
	var ts []*target
	for i, name := range targets.names {
		url := strings.TrimRight(targets.values[i], "/")
		ts = append(ts, &target{name: name, c: &client{http: httpClient, url: url, model: model}})
	}
	if err := run(ctx, ts, sz, rounds); err != nil {
		slog.Error("loadbench failed", "err", err)
		os.Exit(1)
	}
	printReport(os.Stdout, ts, sz, rounds, goals)
}

// validate checks the flags that the scenarios rely on.
func validate(targets, rounds int, sz sizes) error {
	switch {
	case targets == 0:
		return errors.New("no -target name=url")
	case rounds < 1:
		return errors.New("-rounds must be at least 1")
	case sz.running < 1 || sz.streams <= sz.running:
		return errors.New("-streams must be more than -running, and -running at least 1")
	case min(sz.promptTokens, sz.streamPromptTokens, sz.longPromptTokens) < 1:
		return errors.New("prompt sizes must be at least 1 token")
	case sz.genTokens < 2 || sz.runningTokens < warmEvents:
		return fmt.Errorf("-gen-tokens must be at least 2, -running-tokens at least %d", warmEvents)
	}
	return nil
}

// parseGoals turns -agg-goal flags into ratios by target name.
func parseGoals(g namedValues, targets namedValues) (map[string]float64, error) {
	goals := map[string]float64{}
	for i, name := range g.names {
		v, err := strconv.ParseFloat(g.values[i], 64)
		if err != nil || v <= 0 {
			return nil, fmt.Errorf("-agg-goal %s=%s: want a positive ratio", name, g.values[i])
		}
		if !slices.Contains(targets.names, name) {
			return nil, fmt.Errorf("-agg-goal %s: no -target of that name", name)
		}
		goals[name] = v
	}
	return goals, nil
}

// run warms every server, calibrates the prompt size on the first, then runs the rounds: each
// scenario on each server in turn.
func run(ctx context.Context, ts []*target, sz sizes, rounds int) error {
	p := &prompter{tokensPerWord: 1}
	for _, t := range ts {
		if _, err := t.c.stream(ctx, p.prompt("warm-up/"+t.name, 32), 8, nil); err != nil {
			return fmt.Errorf("warm up %s: %w", t.name, err)
		}
	}
	if err := p.calibrate(ctx, ts[0].c); err != nil {
		return err
	}
	slog.Info("prompt size calibrated", "tokens_per_word", p.tokensPerWord, "overhead", p.overhead)
	for n := 1; n <= rounds; n++ {
		r := round{n: n, p: p, sz: sz}
		for _, scenario := range []string{"single", "concurrent", "long-prompt"} {
			for _, t := range ts {
				start := time.Now()
				figures, err := runScenario(ctx, t, scenario, r)
				if err != nil {
					return fmt.Errorf("round %d, %s on %s: %w", n, scenario, t.name, err)
				}
				slog.Info("scenario done", append([]any{"round", n, "scenario", scenario, "target", t.name,
					"took", time.Since(start).Round(time.Millisecond)}, figures...)...)
			}
		}
	}
	return nil
}

// runScenario runs one scenario on t, keeps its result and returns its main figures as log
// attributes, so that a round spoiled by other work on the machine shows in the log.
func runScenario(ctx context.Context, t *target, scenario string, r round) ([]any, error) {
	switch scenario {
	case "single":
		res, err := runSingle(ctx, t.c, r)
		t.single = append(t.single, res)
		return []any{"prompt_tok_s", num(res.promptRate, 1), "gen_tok_s", num(res.genRate, 1)}, err
	case "concurrent":
		res, err := runConcurrent(ctx, t.c, r)
		t.concurrent = append(t.concurrent, res)
		return []any{"aggregate_tok_s", num(res.aggregate, 1), "ttft_max_s", num(percentile(res.ttfts, 100), 2)}, err
	default:
		res, err := runLongPrompt(ctx, t.c, r)
		t.long = append(t.long, res)
		return []any{"long_ttft_s", num(res.longTTFT, 2), "itl_before_ms", num(1000*res.itlBefore, 0),
			"itl_during_ms", num(1000*res.itlDuring, 0)}, err
	}
}
