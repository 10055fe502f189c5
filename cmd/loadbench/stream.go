package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"time"
)

// chatRequest is the body of one streamed /v1/chat/completions request. ignore_eos is a
// llama.cpp server extra that SYN4PSE accepts and Ollama ignores (unknown JSON fields are
// dropped), so both get the same bytes.
type chatRequest struct {
	Model         string        `json:"model"`
	Messages      []chatMessage `json:"messages"`
	Stream        bool          `json:"stream"`
	StreamOptions struct {
		IncludeUsage bool `json:"include_usage"`
	} `json:"stream_options"`
	MaxTokens   int     `json:"max_tokens"`
	Temperature float64 `json:"temperature"`
	Seed        int     `json:"seed"`
	IgnoreEOS   bool    `json:"ignore_eos"`
}

type chatMessage struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

// chunk is the part of an OpenAI chat.completion.chunk (or an error event) that the bench reads.
type chunk struct {
	Choices []struct {
		Delta struct {
			Content          string `json:"content"`
			ReasoningContent string `json:"reasoning_content"`
			Reasoning        string `json:"reasoning"`
		} `json:"delta"`
		FinishReason *string `json:"finish_reason"`
	} `json:"choices"`
	Usage *struct {
		PromptTokens     int `json:"prompt_tokens"`
		CompletionTokens int `json:"completion_tokens"`
	} `json:"usage"`
	Error *struct {
		Message string `json:"message"`
	} `json:"error"`
}

// result is what one streamed request did, timed at the client.
type result struct {
	start time.Time
	// answered is when the first chunk carrying text or a finish reason arrived: the end of the
	// prompt's processing, also for a stream whose first token ends it.
	answered time.Time
	// finished is when the chunk with the finish reason arrived: after the last token, shown or
	// not (a server sends no text for a token that is not valid UTF-8 on its own, and Ollama
	// drops some), so the span from answered to finished holds every token but the first.
	finished time.Time
	// events are the arrival times of the chunks that carried text. A server may merge tokens
	// into one chunk (an incomplete UTF-8 sequence is held back), so events can be fewer than
	// the tokens generated.
	events       []time.Time
	promptTokens int
	// completionTokens is the server's count, when it sent usage (hasUsage).
	completionTokens int
	hasUsage         bool
	finishReason     string
	// canceled is set when the bench stopped the stream itself; usage is then unknown.
	canceled bool
}

// ttft is the time to the first answer: text, or the end of a stream whose first token ended it.
func (r result) ttft() time.Duration {
	return r.answered.Sub(r.start)
}

// generated is the number of tokens generated: the server's usage count, else the events seen.
func (r result) generated() int {
	if r.hasUsage {
		return r.completionTokens
	}
	return len(r.events)
}

// end is when the stream finished: its finish reason, else (a stream cut short, as Ollama cuts
// one that repeats a token 30 times) its last text.
func (r result) end() time.Time {
	switch {
	case !r.finished.IsZero():
		return r.finished
	case len(r.events) > 0:
		return r.events[len(r.events)-1]
	}
	return r.answered
}

// decode is the time the tokens after the first took to come.
func (r result) decode() time.Duration {
	return r.end().Sub(r.answered)
}

// genRate is the tokens per second after the first one, the decode speed the client sees; NaN
// for a stream of fewer than two tokens.
func (r result) genRate() float64 {
	if r.generated() < 2 || r.decode() <= 0 {
		return math.NaN()
	}
	return float64(r.generated()-1) / r.decode().Seconds()
}

// client streams chat completions from one server.
type client struct {
	http  *http.Client
	url   string // base URL, e.g. http://127.0.0.1:8080
	model string
}

// stream sends one request and reads its events until [DONE]. It asks for greedy sampling, so
// that a prompt makes the same tokens on every server. onText, when set, is called at each text
// event (with the count so far) from the reading goroutine. A canceled ctx ends a stream that
// had text without an error: the result holds what had arrived.
func (c *client) stream(ctx context.Context, prompt string, maxTokens int, onText func(n int)) (result, error) {
	body := chatRequest{
		Model:       c.model,
		Messages:    []chatMessage{{Role: "user", Content: prompt}},
		Stream:      true,
		MaxTokens:   maxTokens,
		Temperature: 0,
		Seed:        1,
		IgnoreEOS:   true,
	}
	body.StreamOptions.IncludeUsage = true
	b, err := json.Marshal(body)
	if err != nil {
		return result{}, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url+"/v1/chat/completions", bytes.NewReader(b))
	if err != nil {
		return result{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	res := result{start: time.Now()}
	resp, err := c.http.Do(req)
	if err != nil {
		return c.stopped(ctx, res, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 2048))
		return res, fmt.Errorf("%s: %s: %s", c.url, resp.Status, bytes.TrimSpace(msg))
	}
	err = readEvents(resp.Body, func(data []byte) error {
		now := time.Now()
		var ch chunk
		if err := json.Unmarshal(data, &ch); err != nil {
			return fmt.Errorf("bad event %q: %w", data, err)
		}
		if ch.Error != nil {
			return fmt.Errorf("server error: %s", ch.Error.Message)
		}
		if ch.Usage != nil {
			res.promptTokens, res.completionTokens = ch.Usage.PromptTokens, ch.Usage.CompletionTokens
			res.hasUsage = true
		}
		for _, choice := range ch.Choices {
			d := choice.Delta
			text := d.Content != "" || d.ReasoningContent != "" || d.Reasoning != ""
			finished := choice.FinishReason != nil && *choice.FinishReason != ""
			if (text || finished) && res.answered.IsZero() {
				res.answered = now
			}
			if text {
				res.events = append(res.events, now)
				if onText != nil {
					onText(len(res.events))
				}
			}
			if finished {
				res.finished = now
				res.finishReason = *choice.FinishReason
			}
		}
		return nil
	})
	if err != nil {
		return c.stopped(ctx, res, err)
	}
	if res.answered.IsZero() {
		return res, fmt.Errorf("%s: stream ended without text or a finish reason", c.url)
	}
	return res, nil
}

// stopped turns an error caused by the bench canceling ctx into a canceled result.
func (c *client) stopped(ctx context.Context, res result, err error) (result, error) {
	if ctx.Err() != nil && len(res.events) > 0 {
		res.canceled = true
		return res, nil
	}
	return res, err
}

// errDone ends readEvents at the stream's "data: [DONE]".
var errDone = errors.New("done")

// readEvents calls fn with the data of each server-sent event in r until "[DONE]" or the end.
// Lines of one event are joined with "\n" (the SSE rule); comments, event names and ids are
// skipped.
func readEvents(r io.Reader, fn func(data []byte) error) error {
	scanner := bufio.NewScanner(r)
	scanner.Buffer(make([]byte, 64<<10), 16<<20)
	var data []byte
	pending := false
	flush := func() error {
		if !pending {
			return nil
		}
		pending = false
		d := data
		data = nil
		if string(d) == "[DONE]" {
			return errDone
		}
		return fn(d)
	}
	for scanner.Scan() {
		line := scanner.Bytes()
		if len(line) == 0 {
			if err := flush(); err != nil {
				return ignoreDone(err)
			}
			continue
		}
		value, ok := bytes.CutPrefix(line, []byte("data:"))
		if !ok {
			continue
		}
		value = bytes.TrimPrefix(value, []byte(" "))
		if pending {
			data = append(data, '\n')
		}
		data = append(data, value...)
		pending = true
	}
	if err := scanner.Err(); err != nil {
		return err
	}
	return ignoreDone(flush())
}

func ignoreDone(err error) error {
	if errors.Is(err, errDone) {
		return nil
	}
	return err
}
