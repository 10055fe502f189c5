package main

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"text/tabwriter"
)

// summary is one server's figures over all rounds: medians of the per-round values, and
// percentiles over the pooled samples.
type summary struct {
	promptRate, genRate, aggregate float64
	promptTokens, singleGen        []int
	ttftP50, ttftP95               float64
	gens                           []int
	longTokens                     []int
	longTTFT, lateP50, lateMax     float64
	itlBefore, itlDuring, itlRatio float64
	maxDuring                      float64
	tokensDuring                   []int
	// followUps counts, per scenario (a, b, c), the requests that ended early and were followed.
	followUps [3]int
}

func summarize(t *target) summary {
	var s summary
	var prompt, gen, agg, ttfts, long, late, before, during, ratio, stall []float64
	for _, r := range t.single {
		prompt, gen = append(prompt, r.promptRate), append(gen, r.genRate)
		s.promptTokens, s.singleGen = append(s.promptTokens, r.promptTokens), append(s.singleGen, r.gen)
		s.followUps[0] += r.followUps
	}
	for _, r := range t.concurrent {
		agg = append(agg, r.aggregate)
		ttfts = append(ttfts, r.ttfts...)
		s.gens = append(s.gens, r.gens...)
		s.followUps[1] += r.followUps
	}
	for _, r := range t.long {
		long, late = append(long, r.longTTFT), append(late, r.lateTTFT...)
		s.longTokens = append(s.longTokens, r.longTokens)
		before, during = append(before, r.itlBefore), append(during, r.itlDuring)
		ratio, stall = append(ratio, r.itlDuring/r.itlBefore), append(stall, r.maxDuring)
		s.tokensDuring = append(s.tokensDuring, r.tokensDuring)
		s.followUps[2] += r.followUps
	}
	s.promptRate, s.genRate, s.aggregate = median(prompt), median(gen), median(agg)
	s.ttftP50, s.ttftP95 = percentile(ttfts, 50), percentile(ttfts, 95)
	s.longTTFT, s.lateP50, s.lateMax = median(long), percentile(late, 50), percentile(late, 100)
	s.itlBefore, s.itlDuring, s.itlRatio = median(before), median(during), median(ratio)
	s.maxDuring = percentile(stall, 100)
	return s
}

// printReport writes the table of every server's figures, then the goals: the first server's
// ratios against the others and against itself.
func printReport(w io.Writer, ts []*target, sz sizes, rounds int, aggGoals map[string]float64) {
	sums := make([]summary, len(ts))
	for i, t := range ts {
		sums[i] = summarize(t)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	header := "\t"
	for _, t := range ts {
		header += t.name + "\t"
	}
	fmt.Fprintf(w, "\nmedians of %d rounds; TTFT = time to first token, seen by the client. A stream whose request\n"+
		"ends early (end of turn, Ollama's 30-repeats stop) sends another until it has its tokens: counts below.\n", rounds)
	fmt.Fprintln(tw, header)
	row := func(label string, f func(s summary) string) {
		line := label + "\t"
		for _, s := range sums {
			line += f(s) + "\t"
		}
		fmt.Fprintln(tw, line)
	}
	row(fmt.Sprintf("(a) 1 stream, ~%d-token prompt: prompt tok/s", sz.promptTokens), func(s summary) string { return num(s.promptRate, 1) })
	row("(a) generated tok/s", func(s summary) string { return num(s.genRate, 1) })
	row(fmt.Sprintf("(a) tokens: prompt / generated (asked %d)", sz.genTokens), func(s summary) string {
		return spread(s.promptTokens) + " / " + spread(s.singleGen)
	})
	row(fmt.Sprintf("(b) %d streams: aggregate generated tok/s", sz.streams), func(s summary) string { return num(s.aggregate, 1) })
	row("(b) TTFT p50 / p95 (s)", func(s summary) string { return num(s.ttftP50, 2) + " / " + num(s.ttftP95, 2) })
	row(fmt.Sprintf("(b) generated per stream (asked %d)", sz.genTokens), func(s summary) string { return spread(s.gens) })
	row(fmt.Sprintf("(c) ~%d-token prompt among %d running: its TTFT (s)", sz.longPromptTokens, sz.running), func(s summary) string { return num(s.longTTFT, 2) })
	row("(c) its prompt tokens", func(s summary) string { return spread(s.longTokens) })
	row(fmt.Sprintf("(c) %d streams sent %v after it: TTFT p50 / max (s)", sz.streams-1-sz.running, sz.arrivalDelay), func(s summary) string {
		return num(s.lateP50, 2) + " / " + num(s.lateMax, 2)
	})
	row("(c) running streams' inter-token before (ms)", func(s summary) string { return num(1000*s.itlBefore, 0) })
	row("(c) inter-token during its prompt (ms)", func(s summary) string { return num(1000*s.itlDuring, 0) })
	row("(c) during / before", func(s summary) string { return num(s.itlRatio, 2) + "x" })
	row("(c) longest gap during (s)", func(s summary) string { return num(s.maxDuring, 2) })
	row("(c) text events of running streams during", func(s summary) string { return spread(s.tokensDuring) })
	row("requests ended early and followed up, a / b / c", func(s summary) string {
		return fmt.Sprintf("%d / %d / %d", s.followUps[0], s.followUps[1], s.followUps[2])
	})
	tw.Flush()

	fmt.Fprintf(w, "\ngoals for %s\n", ts[0].name)
	gw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(gw, "goal\tmeasured\t")
	ours := sums[0]
	goal := func(label string, measured, want float64, atMost bool) {
		ok := measured >= want
		if atMost {
			ok = measured <= want
		}
		verdict := "met"
		if math.IsNaN(measured) || math.IsInf(measured, 0) {
			verdict = "n/a"
		} else if !ok {
			verdict = "NOT met"
		}
		fmt.Fprintf(gw, "%s\t%sx\t%s\n", label, num(measured, 2), verdict)
	}
	for i, t := range ts[1:] {
		o := sums[i+1]
		goal(fmt.Sprintf("1 stream prompt tok/s >= 1.0x %s", t.name), ours.promptRate/o.promptRate, 1, false)
		goal(fmt.Sprintf("1 stream generated tok/s >= 1.0x %s", t.name), ours.genRate/o.genRate, 1, false)
	}
	goal(fmt.Sprintf("%d-stream aggregate >= 3x own 1 stream", sz.streams), ours.aggregate/ours.genRate, 3, false)
	for i, t := range ts[1:] {
		if want, ok := aggGoals[t.name]; ok {
			goal(fmt.Sprintf("%d-stream aggregate >= %gx %s", sz.streams, want, t.name), ours.aggregate/sums[i+1].aggregate, want, false)
		}
	}
	goal("long prompt raises inter-token time <= 2x", ours.itlRatio, 2, true)
	gw.Flush()
}

// num formats x with prec decimals, "-" for NaN.
func num(x float64, prec int) string {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return "-"
	}
	return fmt.Sprintf("%.*f", prec, x)
}

// spread is "n" when every value is n, else "min-max".
func spread(xs []int) string {
	if len(xs) == 0 {
		return "-"
	}
	lo, hi := slices.Min(xs), slices.Max(xs)
	if lo == hi {
		return fmt.Sprint(lo)
	}
	return strings.Join([]string{fmt.Sprint(lo), fmt.Sprint(hi)}, "-")
}
